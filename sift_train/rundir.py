"""Writer of the run folder (``docs/run-format.md``, format version 1). Every write is atomic."""
from __future__ import annotations

import csv
import io
import json
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from sift_graph.files import atomic_write_bytes

from .outdir import writing

FORMAT = "sift-run"
FORMAT_VERSION = 1
METRICS_COLUMNS = ["step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "flops"]
REASONS = ("init", "epoch_end", "mask_update", "final", "every")
CHECKPOINT_KEYS = {"epoch": int, "step": int, "model": dict, "optimizer": dict, "sparse": dict,
                   "torch_rng": torch.Tensor}
_SNAPSHOT = re.compile(r"^step_(\d+)\.npz$")


def _write(path: Path, data: bytes) -> None:
    """``atomic_write_bytes``; a failure (full disk, read-only, ...) is one ``OutputError`` naming ``path``."""
    with writing(path):
        atomic_write_bytes(path, data)


def versions() -> dict[str, str]:
    import sift_train

    return {"sift": sift_train.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__}


def encode_snapshot(step: int, epoch: float, test_acc: float | None, reason: str,
                    tensors: dict[str, tuple[np.ndarray, np.ndarray]],
                    dense: dict[str, np.ndarray] | None = None) -> bytes:
    """npz bytes of one snapshot: ``meta`` JSON, per sparse tensor ``shape``, packed ``mask``,
    ``values``; per dense weight (``dense``) ``shape`` and all ``values``."""
    if reason not in REASONS:
        raise ValueError(f"unknown snapshot reason {reason!r}; expected one of {REASONS}")
    arrays: dict[str, np.ndarray] = {}
    for name, (mask, weight) in tensors.items():
        mask = np.asarray(mask, dtype=bool)
        arrays[f"{name}/shape"] = np.asarray(mask.shape, dtype=np.int64)
        arrays[f"{name}/mask"] = np.packbits(mask.reshape(-1), bitorder="big")
        arrays[f"{name}/values"] = np.asarray(weight, dtype=np.float32).reshape(-1)[mask.reshape(-1)]
    dense = dense or {}
    for name, weight in dense.items():
        arrays[f"{name}/shape"] = np.asarray(np.shape(weight), dtype=np.int64)
        arrays[f"{name}/values"] = np.asarray(weight, dtype=np.float32).reshape(-1)
    meta = {"step": int(step), "epoch": float(epoch),
            "test_acc": None if test_acc is None else float(test_acc),
            "reason": reason, "tensors": list(tensors), "dense_tensors": list(dense)}
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class RunDir:
    """One run folder: ``config.json``, ``metrics.csv``, ``snapshots/``, ``checkpoint/last.pt``, ``done.json``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.snapshots = self.path / "snapshots"
        self.masks = self.path / "masks"
        self.checkpoint = self.path / "checkpoint" / "last.pt"
        self._rows: list[dict] = []

    # ------------------------------------------------------------------ state of the folder
    @property
    def done(self) -> bool:
        return (self.path / "done.json").is_file()

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def create(self) -> None:
        for folder in (self.snapshots, self.masks, self.checkpoint.parent):
            with writing(folder, "cannot create the folder"):
                folder.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ config
    def write_config(self, config: dict, mask_sparsity: dict[str, float],
                     sparse_tensors: dict[str, tuple[int, ...]], active: dict[str, int]) -> None:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": config,
            "mask_sparsity": {n: float(s) for n, s in mask_sparsity.items()},
            "sparse_tensors": {n: {"shape": list(shape), "active": int(active[n])}
                               for n, shape in sparse_tensors.items()},
            "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _write(self.path / "config.json", (json.dumps(meta, indent=2) + "\n").encode())

    def read_config(self) -> dict:
        file = self.path / "config.json"
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{file}: cannot read the run's config ({exc})") from None

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, row: dict) -> None:
        """Add one row and rewrite ``metrics.csv`` atomically (small file; never half-written)."""
        self._rows.append({c: row.get(c) for c in METRICS_COLUMNS})
        self._write_metrics()

    def _write_metrics(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in self._rows:
            writer.writerow({k: _fmt(v) for k, v in r.items()})
        _write(self.path / "metrics.csv", buf.getvalue().encode())

    def last_test_acc(self) -> float | None:
        """Test accuracy of the last metrics row written (``None`` if there is none)."""
        value = self._rows[-1]["test_acc"] if self._rows else None
        return None if value in (None, "") else float(value)

    # ------------------------------------------------------------------ snapshots
    def write_snapshot(self, step: int, epoch: float, test_acc: float | None, reason: str,
                       tensors: dict[str, tuple[np.ndarray, np.ndarray]],
                       dense: dict[str, np.ndarray] | None = None) -> Path:
        path = self.snapshots / f"step_{step:08d}.npz"
        _write(path, encode_snapshot(step, epoch, test_acc, reason, tensors, dense))
        return path

    def write_masks(self, step: int, masks: dict[str, np.ndarray]) -> Path:
        """``masks/step_XXXXXXXX.npz``: the masks chosen by the update at ``step``, bit-packed
        (``<name>/shape``, ``<name>/mask`` as in snapshots; no weights)."""
        arrays: dict[str, np.ndarray] = {}
        for name, mask in masks.items():
            mask = np.asarray(mask, dtype=bool)
            arrays[f"{name}/shape"] = np.asarray(mask.shape, dtype=np.int64)
            arrays[f"{name}/mask"] = np.packbits(mask.reshape(-1), bitorder="big")
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        with writing(self.masks, "cannot create the folder"):
            self.masks.mkdir(parents=True, exist_ok=True)
        path = self.masks / f"step_{step:08d}.npz"
        _write(path, buf.getvalue())
        return path

    # ------------------------------------------------------------------ resume
    def save_checkpoint(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        _write(self.checkpoint, buf.getvalue())

    def load_checkpoint(self, map_location=None) -> dict:
        """The checkpoint's state; ``ValueError`` naming the file and the reason when it is empty,
        unreadable, or lacks a key of ``CHECKPOINT_KEYS`` (or holds it with another type)."""
        file = self.checkpoint
        if file.is_file() and file.stat().st_size == 0:
            raise ValueError(f"{file}: cannot read the checkpoint: empty file (0 bytes)")
        try:
            state = torch.load(file, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user-facing error
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{file}: cannot read the checkpoint ({reason})") from None
        if not isinstance(state, dict):
            raise ValueError(f"{file}: not a sift checkpoint (a {type(state).__name__}, not a dict)")
        for key, kind in CHECKPOINT_KEYS.items():
            if key not in state:
                raise ValueError(f"{file}: not a sift checkpoint (missing key {key!r})")
            if not isinstance(state[key], kind) or isinstance(state[key], bool):
                raise ValueError(f"{file}: not a sift checkpoint ({key!r} is a {type(state[key]).__name__}, "
                                 f"expected {kind.__name__})")
        return state

    def rewind(self, step: int) -> None:
        """Forget what was written after ``step`` (metrics rows, snapshots): the state of the last
        checkpoint, from which a resumed run writes them again identically."""
        self._rows = []
        file = self.path / "metrics.csv"
        if file.is_file():
            with file.open(newline="") as f:
                self._rows = [{c: r.get(c) for c in METRICS_COLUMNS}
                              for r in csv.DictReader(f) if int(r["step"]) <= step]
        for snap in [*self.snapshots.glob("step_*.npz"), *self.masks.glob("step_*.npz")]:
            match = _SNAPSHOT.match(snap.name)
            if match and int(match.group(1)) > step:
                with writing(snap, "cannot remove"):
                    snap.unlink()
        if file.is_file():
            self._write_metrics()

    def write_done(self, info: dict) -> None:
        _write(self.path / "done.json", (json.dumps(info) + "\n").encode())

    def read_done(self) -> dict:
        file = self.path / "done.json"
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{file}: cannot read the finished run's result ({exc})") from None


def _fmt(v) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)
