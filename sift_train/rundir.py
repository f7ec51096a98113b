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

from .flops import masked_weights
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


def _pack_mask(arrays: dict[str, np.ndarray], name: str, mask) -> np.ndarray:
    """Add ``<name>/shape`` and the bit-packed ``<name>/mask`` to ``arrays``; return the bool mask."""
    mask = np.asarray(mask, dtype=bool)
    arrays[f"{name}/shape"] = np.asarray(mask.shape, dtype=np.int64)
    arrays[f"{name}/mask"] = np.packbits(mask.reshape(-1), bitorder="big")
    return mask


def _csv_bytes(columns: list[str], rows: list[dict]) -> bytes:
    """``metrics.csv`` content: header ``columns``, one line per row (missing values empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r.get(k)) for k in columns})
    return buf.getvalue().encode()


def encode_snapshot(step: int, epoch: float, test_acc: float | None, reason: str,
                    tensors: dict[str, tuple[np.ndarray, np.ndarray]],
                    dense: dict[str, np.ndarray] | None = None) -> bytes:
    """npz bytes of one snapshot: ``meta`` JSON, per sparse tensor ``shape``, packed ``mask``,
    ``values``; per dense weight (``dense``) ``shape`` and all ``values``."""
    if reason not in REASONS:
        raise ValueError(f"unknown snapshot reason {reason!r}; expected one of {REASONS}")
    arrays: dict[str, np.ndarray] = {}
    for name, (mask, weight) in tensors.items():
        mask = _pack_mask(arrays, name, mask)
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
                     sparse_tensors: dict[str, tuple[int, ...]], active: dict[str, int],
                     extra: dict | None = None,
                     dense_tensors: dict[str, tuple[int, ...]] | None = None) -> None:
        """``extra``: method records (e.g. ``granet``: nominal and searched sparsity) added at top level;
        ``dense_tensors``: shapes of the dense weights the snapshots store (readers size-check with them)."""
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": config,
            "mask_sparsity": {n: float(s) for n, s in mask_sparsity.items()},
            "sparse_tensors": {n: {"shape": list(shape), "active": int(active[n])}
                               for n, shape in sparse_tensors.items()},
            "dense_tensors": {n: {"shape": list(shape)} for n, shape in (dense_tensors or {}).items()},
            "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(extra or {}),
        }
        _write(self.path / "config.json", (json.dumps(meta, indent=2) + "\n").encode())

    def read_config(self) -> dict:
        return _read_json(self.path / "config.json", "the run's config")

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, row: dict) -> None:
        """Add one row and rewrite ``metrics.csv`` atomically (small file; never half-written)."""
        self._rows.append({c: row.get(c) for c in METRICS_COLUMNS})
        self._write_metrics()

    def _write_metrics(self) -> None:
        _write(self.path / "metrics.csv", _csv_bytes(list(METRICS_COLUMNS), self._rows))

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
            _pack_mask(arrays, name, mask)
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
        return _read_json(self.path / "done.json", "the finished run's result")


def _read_json(file: Path, what: str) -> dict:
    """``file`` parsed as JSON; ``ValueError`` naming the file and ``what`` it holds otherwise."""
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{file}: cannot read {what} ({exc})") from None


def _fmt(v) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


class RunWriter:
    """Run folders from any training loop (``docs/run-format.md``, ``docs/byom.md``).

    ``writer.snapshot(step, model, test_acc=...)`` writes ``snapshots/step_XXXXXXXX.npz`` of every
    masked weight of ``model`` (``<param>_mask`` buffers: sift masks or ``torch.nn.utils.prune``), and
    ``config.json`` on the first call; ``writer.log(step, **scalars)`` adds a ``metrics.csv`` row
    (the documented columns first, then any other scalar in order of first use); ``writer.finish(...)``
    writes ``done.json``. ``epoch`` is ``step / steps_per_epoch``. ``config`` is stored under
    ``"config"`` (``sift_graph.analyze`` copies its scalar entries, e.g. ``family``, into its tables).
    An existing folder is continued: its metrics rows are kept.
    """

    def __init__(self, path: str | Path, config: dict | None = None, *, steps_per_epoch: int = 1):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.run = RunDir(path)
        self.run.create()
        self.config = dict(config or {})
        self.steps_per_epoch = steps_per_epoch
        self._rows: list[dict] = []
        self._columns = list(METRICS_COLUMNS)
        metrics = self.run.path / "metrics.csv"
        if metrics.is_file():
            with metrics.open(newline="") as f:
                reader = csv.DictReader(f)
                self._columns += [c for c in reader.fieldnames or [] if c not in self._columns]
                self._rows = list(reader)

    @property
    def path(self) -> Path:
        return self.run.path

    def log(self, step: int, **scalars) -> None:
        """One ``metrics.csv`` row at optimizer step ``step`` (e.g. ``train_loss=..., test_acc=...``)."""
        row = {"step": int(step), "epoch": step / self.steps_per_epoch, **scalars}
        self._columns += [k for k in row if k not in self._columns]
        self._rows.append(row)
        _write(self.path / "metrics.csv", _csv_bytes(self._columns, self._rows))

    def snapshot(self, step: int, model: torch.nn.Module, test_acc: float | None = None, *,
                 reason: str | None = None) -> Path:
        """Masks and weights of every masked weight of ``model`` at ``step``; ``reason`` defaults to
        ``"init"`` at step 0 and ``"every"`` otherwise."""
        masks = masked_weights(model)
        if not masks:
            raise ValueError("RunWriter.snapshot: the model has no <param>_mask buffers (nothing sparse "
                             "to snapshot); build it with sift_train.sparse_ift or SparseTraining")
        tensors = {}
        for name, mask in masks.items():
            prefix, _, attr = name.rpartition(".")
            weight = getattr(model.get_submodule(prefix), attr).detach()
            m, w = mask.detach().cpu().numpy(), weight.cpu().float().numpy()
            if m.ndim == 3:  # Conv1d (c_out, c_in, k): the same bipartite graph as (c_out, c_in, k, 1)
                m, w = m[..., None], w[..., None]
            tensors[name] = (m, w)
        if not (self.path / "config.json").is_file():
            active = {n: int(m.sum()) for n, (m, _) in tensors.items()}
            self.run.write_config(self.config, {n: 1.0 - active[n] / m.size for n, (m, _) in tensors.items()},
                                  {n: m.shape for n, (m, _) in tensors.items()}, active)
        reason = reason or ("init" if step == 0 else "every")
        return self.run.write_snapshot(step, step / self.steps_per_epoch, test_acc, reason, tensors)

    def finish(self, **info) -> None:
        """``done.json`` (e.g. ``step=..., test_acc=...``): the run is complete."""
        self.run.write_done(info)
