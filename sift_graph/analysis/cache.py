"""Content-keyed cache of per-snapshot layer metrics (``docs/analyze.md`` § the cache).

An entry is the list of per-layer rows of one snapshot, stored as JSON under
``<folder>/<sha256 of the file's bytes>.<convention>.<layers>.<metric code id>.json``: same bytes, same
convention, same layer choice (``sparse`` / ``all``), same metric code -> same rows. The sparse rows
of the two choices are the same, so neither recomputes them: a ``sparse`` look-up takes them from an
``all`` entry, and an ``all`` computation computes only the dense weights where a ``sparse`` entry
exists (:func:`sift_graph.analysis.compute.compute_snapshot`). The metric code
id (:func:`metric_code_id`) hashes the sift version *and the source of every module that computes or
decodes a metric*: the version alone is not bumped for every change of the metric code, and a stale
result must never be served, so any edit of that code (even a comment) starts a fresh cache.

``index.json`` maps each snapshot path to its ``stat`` signature (size, mtime_ns, ctime_ns, inode,
device) and sha256, so that unchanged files are not re-read. A file with any other signature (or not
in the index) goes to the compute stage, which reads it once, hashes those bytes and serves the
entry of that content if there is one (:class:`CacheEntries`, readable by the workers): it is
recomputed only if the content changed, and no file is read twice. Size alone is never trusted; ctime cannot be set back by a
copy tool, so even a same-size rewrite with a restored mtime is re-hashed. As in git's "racy" check,
files changed less than :data:`RACY_NS` before the index is saved are left out of it. Nothing is
pickled; NaN (and any non-finite value) is stored as ``null``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_text
from ..version import __version__

RACY_NS = 2_000_000_000
#: Modules of ``sift_graph`` that neither compute nor decode metric values: left out of
#: :func:`metric_code_id` (everything else, including modules added later, is in it).
NOT_METRIC_CODE = ("__init__.py", "__main__.py", "files.py", "version.py", "plots.py",
                   "pipeline.py", "cli_analyze.py", "cli_metrics.py", "checkpoints.py")


def code_id(package: Path) -> str:
    """12 hex digits of sha256 over the sift version and the source of ``package``'s metric modules."""
    digest = hashlib.sha256(__version__.encode())
    for source in sorted(package.glob("*.py")):
        if source.name not in NOT_METRIC_CODE:
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def metric_code_id() -> str:
    """:func:`code_id` of this ``sift_graph`` (part of every cache entry's name)."""
    return code_id(Path(__file__).resolve().parent.parent)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _nan_to_none(row: dict) -> dict:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _none_to_nan(row: dict) -> dict:
    return {k: math.nan if v is None else v for k, v in row.items()}


@dataclass(frozen=True)
class CacheEntries:
    """The entries of one cache (content sha256 -> rows) for one convention and layer choice,
    without the index: small enough to send to every analysis worker, which looks a snapshot's
    content up before computing it. ``code``: the :func:`metric_code_id` of the process that made it
    (workers read and name entries as it does)."""

    folder: Path
    convention: str
    layers: str
    code: str

    def _entry(self, sha: str, layers: str) -> Path:
        return self.folder / f"{sha}.{self.convention}.{layers}.{self.code}.json"

    def _read(self, sha: str, layers: str) -> list[dict] | None:
        try:
            rows = json.loads(self._entry(sha, layers).read_text())["layers"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return None
        return [_none_to_nan(r) for r in rows]

    def get(self, sha: str) -> list[dict] | None:
        """The rows of this layer choice; for ``sparse`` also the sparse rows of an ``all`` entry."""
        rows = self._read(sha, self.layers)
        if rows is None and self.layers == "sparse" and (every := self._read(sha, "all")) is not None:
            rows = [row for row in every if row.get("kind") == "sparse"]
        return rows

    def sparse_rows(self, sha: str) -> list[dict] | None:
        """The sparse tensors' rows of this content if a ``sparse`` entry holds them (an ``all``
        analysis then computes only the dense weights)."""
        return self._read(sha, "sparse")

    def put(self, sha: str, rows: list[dict]) -> None:
        payload = {"sha256": sha, "layers": [_nan_to_none(r) for r in rows]}
        atomic_write_text(self._entry(sha, self.layers), json.dumps(payload, allow_nan=False))


def signature(st: os.stat_result) -> list[int]:
    """What the index compares: size, mtime_ns, ctime_ns, inode, device."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class SnapshotCache:
    """Per-snapshot results under ``folder``, keyed on file content, convention, layer choice and
    metric code. A ``sparse`` look-up also takes the sparse rows of an ``all`` entry of that content."""

    def __init__(self, folder: Path, convention: str, layers: str = "sparse"):
        folder = Path(folder)
        self.entries = CacheEntries(folder, convention, layers, metric_code_id())
        self._index_path = folder / "index.json"
        try:
            index = json.loads(self._index_path.read_text())
        except (OSError, ValueError, RecursionError):
            index = {}
        self._index = {k: v for k, v in index.items() if _valid_entry(v)} if isinstance(index, dict) else {}

    def known_key(self, file: Path) -> str | None:
        """sha256 of ``file``'s content from the index if its whole stat signature is unchanged, else
        None (``OSError`` if it cannot be stat'ed)."""
        entry = self._index.get(str(Path(file).resolve()))
        return entry[-1] if entry and entry[:-1] == signature(os.stat(file)) else None

    def remember(self, file: Path, stat_signature: list[int], sha: str) -> None:
        """Record that ``file``, with this :func:`signature` when it was read, holds content ``sha``."""
        self._index[str(Path(file).resolve())] = [*stat_signature, sha]

    def remember_read(self, file: Path, read_as: tuple[int, ...], sha: str) -> None:
        """:meth:`remember` what a worker read (its ``read_as`` signature, ``sha`` of those bytes), with
        this machine's signature of ``file``, if size, mtime and ctime still match what the worker
        saw (a Dask worker on another machine sees another device number); otherwise nothing."""
        try:
            mine = signature(os.stat(file))
        except OSError:
            return
        if mine[:3] == list(read_as[:3]):
            self.remember(file, mine, sha)

    def key(self, file: Path) -> str:
        """sha256 of ``file``'s content; from the index when its whole stat signature is unchanged."""
        sha = self.known_key(file)
        if sha is None:
            st = os.stat(file)
            sha = file_sha256(file)
            self.remember(file, signature(st), sha)
        return sha

    def get(self, sha: str) -> list[dict] | None:
        return self.entries.get(sha)

    def put(self, sha: str, rows: list[dict]) -> None:
        self.entries.put(sha, rows)

    def save_index(self) -> None:
        now = time.time_ns()
        index = {k: v for k, v in self._index.items() if now - max(v[1], v[2]) >= RACY_NS}
        atomic_write_text(self._index_path, json.dumps(index, indent=0, sort_keys=True))


def _valid_entry(entry) -> bool:
    return (isinstance(entry, list) and len(entry) == 6 and all(isinstance(v, int) for v in entry[:5])
            and isinstance(entry[5], str))


def look_up(cache: SnapshotCache, files: dict) -> tuple[dict, dict, list[str]]:
    """Split ``files`` ``{id: path}`` into cached rows ``{id: rows}`` (index signature unchanged and an
    entry for that content) and the rest ``{id: path}``, plus one problem line per file that cannot
    be stat'ed. Reads no snapshot: the rest is hashed by the compute stage as it reads it."""
    found, missing, problems = {}, {}, []
    for key, path in files.items():
        try:
            sha = cache.known_key(path)
        except OSError as exc:
            problems.append(f"{path}: unreadable ({exc})")
            continue
        rows = None if sha is None else cache.get(sha)
        if rows is None:
            missing[key] = path
        else:
            found[key] = rows
    return found, missing, problems
