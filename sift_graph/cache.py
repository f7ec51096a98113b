"""Content-keyed cache of per-snapshot layer metrics, and atomic file writes.

An entry is the list of per-layer rows of one snapshot file, stored as JSON under
``<folder>/<sha256 of the file>.<convention>.<sift version>.json``: same bytes, same convention,
same sift version -> same rows. ``index.json`` maps each snapshot path to ``(size, mtime_ns, sha256)``
so that unchanged files are not even re-hashed; a touched file is re-hashed, and recomputed only if
its content changed. As in git's "racy" check, files modified less than ``RACY_NS`` before the index
is saved are left out of it (a same-size rewrite within one timestamp tick would otherwise go
unnoticed). Nothing is pickled; NaN (and any non-finite value) is stored as ``null``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

RACY_NS = 2_000_000_000


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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


class SnapshotCache:
    """Per-snapshot results under ``folder``, keyed on file content + convention + sift version."""

    def __init__(self, folder: Path, convention: str, version: str):
        self.folder = Path(folder)
        self.suffix = f".{convention}.{version}.json"
        self._index_path = self.folder / "index.json"
        try:
            self._index = json.loads(self._index_path.read_text())
        except (OSError, ValueError):
            self._index = {}

    def key(self, file: Path) -> str:
        """sha256 of ``file``; from the index when its size and mtime_ns are unchanged."""
        st = os.stat(file)
        name = str(Path(file).resolve())
        entry = self._index.get(name)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return entry[2]
        sha = file_sha256(file)
        self._index[name] = [st.st_size, st.st_mtime_ns, sha]
        return sha

    def _entry(self, sha: str) -> Path:
        return self.folder / f"{sha}{self.suffix}"

    def get(self, sha: str) -> list[dict] | None:
        try:
            rows = json.loads(self._entry(sha).read_text())["layers"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return [_none_to_nan(r) for r in rows]

    def put(self, sha: str, rows: list[dict]) -> None:
        payload = {"sha256": sha, "layers": [_nan_to_none(r) for r in rows]}
        atomic_write_text(self._entry(sha), json.dumps(payload, allow_nan=False))

    def save_index(self) -> None:
        now = time.time_ns()
        index = {k: v for k, v in self._index.items() if now - v[1] >= RACY_NS}
        atomic_write_text(self._index_path, json.dumps(index, indent=0, sort_keys=True))
