"""The one version of sift: the installed distribution's (``pyproject.toml`` ``[project] version``).

``sift_graph.__version__`` and ``sift_train.__version__`` both come from here, through
``importlib.metadata``; a source tree that was never installed reports ``0+unknown``.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "sift"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:
    __version__ = "0+unknown"
