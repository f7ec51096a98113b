"""Read and validate a sift run folder (``docs/run-format.md``, format version 1).

``load_run(path)`` returns a :class:`Run`; its snapshots decode lazily with :meth:`Snapshot.load`.
Every problem raises :class:`RunFormatError` with one line naming the file and what is wrong.
Nothing is unpickled: ``np.load(allow_pickle=False)``, JSON and CSV only.
"""
from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "sift-run"
FORMAT_VERSIONS = (1,)
METRICS_COLUMNS = ["step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "flops"]
_SNAPSHOT_NAME = re.compile(r"^step_(\d{8,})\.npz$")


class RunFormatError(ValueError):
    """A run folder or one of its files does not follow ``docs/run-format.md``."""


@dataclass(frozen=True)
class Snapshot:
    """One ``snapshots/step_XXXXXXXX.npz``: its ``meta`` fields, and :meth:`load` for the tensors."""

    path: Path
    step: int
    epoch: float
    test_acc: float | None
    reason: str
    tensors: tuple[str, ...]

    def iter_tensors(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, mask, weight)`` one tensor at a time (low memory), validating each."""
        with _snapshot_errors(self.path), np.load(self.path, allow_pickle=False) as npz:
            for name in self.tensors:
                mask, weight = _decode_tensor(npz, name, self.path)
                yield name, mask, weight

    def load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{name: (mask, weight)}``: bool mask and float32 weight in PyTorch layout, weight 0 off-mask."""
        return {name: (mask, weight) for name, mask, weight in self.iter_tensors()}


@dataclass(frozen=True)
class Run:
    """A run folder. ``config`` is the ``"config"`` entry of ``config.json`` (the TrainConfig fields);
    ``meta`` is the whole ``config.json``; ``name`` is the folder name."""

    path: Path
    meta: dict
    metrics: pd.DataFrame
    snapshots: list[Snapshot]
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def sparse_tensors(self) -> dict:
        return self.meta.get("sparse_tensors", {})

    @property
    def done(self) -> bool:
        return (self.path / "done.json").is_file()


def load_run(path: str | Path, *, strict: bool = True) -> Run:
    """Read ``config.json``, ``metrics.csv`` and the snapshot headers of the run folder ``path``.

    Snapshots are ordered by step. With ``strict=True`` (default) the first bad snapshot raises
    :class:`RunFormatError`; with ``strict=False`` bad snapshots are left out and their one-line
    messages collected in ``Run.problems``. A bad ``config.json`` or ``metrics.csv`` always raises.
    Tensor data are checked when a snapshot is loaded (:meth:`Snapshot.load`).
    """
    path = Path(path)
    if not path.is_dir():
        raise RunFormatError(f"{path}: not a directory")
    meta = _read_config(path / "config.json")
    metrics = _read_metrics(path / "metrics.csv")
    snapshots, problems = [], []
    snap_dir = path / "snapshots"
    files = sorted(snap_dir.glob("step_*.npz")) if snap_dir.is_dir() else []
    for file in files:
        try:
            snapshots.append(read_snapshot_meta(file))
        except RunFormatError as exc:
            if strict:
                raise
            problems.append(str(exc))
    snapshots.sort(key=lambda s: s.step)
    return Run(path=path, meta=meta, metrics=metrics, snapshots=snapshots, problems=problems)


def read_snapshot_meta(file: Path) -> Snapshot:
    """Read only the ``meta`` entry of a snapshot file and check it against the file name."""
    match = _SNAPSHOT_NAME.match(file.name)
    if match is None:
        raise RunFormatError(f"{file}: snapshot file name must be step_XXXXXXXX.npz (8+ digits)")
    with _snapshot_errors(file), np.load(file, allow_pickle=False) as npz:
        if "meta" not in npz.files:
            raise RunFormatError(f"{file}: no 'meta' entry")
        meta = json.loads(str(npz["meta"][()]))
    missing = [k for k in ("step", "epoch", "tensors") if k not in meta]
    if missing:
        raise RunFormatError(f"{file}: meta lacks {', '.join(missing)}")
    if int(meta["step"]) != int(match.group(1)):
        raise RunFormatError(f"{file}: meta step {meta['step']} does not match the file name")
    test_acc = meta.get("test_acc")
    return Snapshot(
        path=file,
        step=int(meta["step"]),
        epoch=float(meta["epoch"]),
        test_acc=None if test_acc is None else float(test_acc),
        reason=str(meta.get("reason", "")),
        tensors=tuple(meta["tensors"]),
    )


@contextlib.contextmanager
def _snapshot_errors(file: Path):
    """Report any read error of the snapshot ``file`` as a one-line :class:`RunFormatError`."""
    try:
        yield
    except RunFormatError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise RunFormatError(f"{file}: corrupt or truncated snapshot ({exc})") from None


def _read_config(file: Path) -> dict:
    if not file.is_file():
        raise RunFormatError(f"{file}: missing (every run folder needs a config.json)")
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise RunFormatError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunFormatError(f"{file}: not a sift run config (expected \"format\": \"{FORMAT}\")")
    if meta.get("format_version") not in FORMAT_VERSIONS:
        raise RunFormatError(
            f"{file}: unknown format_version {meta.get('format_version')!r} "
            f"(this sift reads {', '.join(map(str, FORMAT_VERSIONS))})"
        )
    if not isinstance(meta.get("config"), dict):
        raise RunFormatError(f"{file}: missing the \"config\" object")
    return meta


def _read_metrics(file: Path) -> pd.DataFrame:
    """``metrics.csv``; an empty frame with the documented header if the run has not evaluated yet."""
    if not file.is_file():
        return pd.DataFrame({c: pd.Series(dtype=float) for c in METRICS_COLUMNS})
    try:
        df = pd.read_csv(file)
    except (OSError, ValueError) as exc:
        raise RunFormatError(f"{file}: unreadable CSV ({exc})") from None
    missing = [c for c in ("step", "test_acc") if c not in df.columns]
    if missing:
        raise RunFormatError(f"{file}: missing column(s) {', '.join(missing)}")
    return df


def _decode_tensor(npz, name: str, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unpack one tensor (``<name>/shape``, ``/mask``, ``/values``) and check it (run-format.md)."""
    keys = [f"{name}/shape", f"{name}/mask", f"{name}/values"]
    missing = [k for k in keys if k not in npz.files]
    if missing:
        raise RunFormatError(f"{file}: tensor {name}: missing {', '.join(missing)}")
    shape = tuple(int(s) for s in npz[keys[0]])
    bits, values = npz[keys[1]], npz[keys[2]]
    numel = int(np.prod(shape))
    if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (numel + 7) // 8:
        raise RunFormatError(
            f"{file}: tensor {name}: mask has {bits.size} bytes ({bits.dtype}), "
            f"expected {(numel + 7) // 8} uint8 for shape {shape}"
        )
    mask = np.unpackbits(bits, count=numel, bitorder="big").astype(bool).reshape(shape)
    n_active = int(np.count_nonzero(mask))
    if values.ndim != 1 or values.size != n_active:
        raise RunFormatError(
            f"{file}: tensor {name}: {values.size} values for {n_active} active mask positions"
        )
    if not np.all(np.isfinite(values)):
        raise RunFormatError(f"{file}: tensor {name}: NaN or infinite weights")
    weight = np.zeros(shape, dtype=np.float32)
    weight[mask] = values.astype(np.float32, copy=False)
    return mask, weight
