"""Output locations: every failure to create or write one is a single line naming the path and the
cause (``OutputError``; the CLIs exit 2), never a traceback (``docs/training.md``, "Resuming and failures")."""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be created or written: ``"<path>: <what> (<cause> [ERRNO])"``."""


def cause(exc: OSError) -> str:
    """``"No space left on device [ENOSPC]"``: the OS's text and the errno name of ``exc``."""
    if exc.errno is None:
        return str(exc) or type(exc).__name__
    return f"{exc.strerror or os.strerror(exc.errno)} [{errno.errorcode.get(exc.errno, exc.errno)}]"


@contextmanager
def writing(path: str | Path, what: str = "cannot write"):
    """Turn an ``OSError`` raised inside the block into an ``OutputError`` naming ``path``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: {what} ({cause(exc)})") from None


def prepare_folder(path: str | Path) -> Path:
    """Make sure ``path`` is a folder (creating it and its parents); refuse a file or a path under one."""
    path = Path(path)
    for part in reversed((path, *path.parents)):
        if part.exists() and not part.is_dir():
            where = "exists and is not a folder" if part == path else f"{part} is a file, not a folder"
            raise OutputError(f"{path}: {where}")
    with writing(path, "cannot create the folder"):
        path.mkdir(parents=True, exist_ok=True)
    return path
