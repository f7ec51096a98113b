"""Read and validate a sift run folder (``docs/run-format.md``, format version 1).

``load_run(path)`` returns a :class:`Run`; its snapshots decode lazily with :meth:`Snapshot.load`.
Every problem raises :class:`RunFormatError` with one line naming the file and the rule it breaks.
Nothing is unpickled (JSON, CSV and plain ``.npy`` arrays only), and nothing is allocated before its
size is checked: a snapshot may decode to at most :func:`snapshot_budget` of the shapes the run's
``config.json`` declares in ``sparse_tensors`` and ``dense_tensors`` (or an explicit
``max_snapshot_bytes``), every array's header is checked against that before it is read
(:mod:`sift_graph.npz`).
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .npz import declared_bytes, open_npz, read_member

FORMAT = "sift-run"
FORMAT_VERSIONS = (1,)
METRICS_COLUMNS = ["step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "flops"]
#: Largest ``config.json`` / ``metrics.csv`` read (far above any real run's).
CONFIG_MAX_BYTES = 64 << 20
METRICS_MAX_BYTES = 1 << 30
#: Budget of a snapshot for its ``meta`` entry and zip/.npy overheads, and per tensor for its
#: three ``.npy`` headers (numpy's header limit is 10 000 bytes).
META_BYTES = 1 << 20
TENSOR_OVERHEAD_BYTES = 3 * 10_000
#: Bytes per element a tensor takes once decoded: a bool mask and a float32 weight.
DECODED_BYTES_PER_ELEMENT = 5
_MAX_DIMS = 8
_SNAPSHOT_NAME = re.compile(r"^step_(\d{8,})\.npz$")


class RunFormatError(ValueError):
    """A run folder or one of its files does not follow ``docs/run-format.md``."""


def snapshot_budget(shapes: dict[str, tuple[int, ...]],
                    dense_shapes: dict[str, tuple[int, ...]] | None = None) -> int:
    """Bytes a snapshot of sparse tensors ``shapes`` and dense weights ``dense_shapes`` may take,
    stored and decoded.

    Per tensor: its stored arrays at full density (int64 shape, packed mask for a sparse tensor,
    float32 values) plus the decoded bool mask and float32 weight, plus
    :data:`TENSOR_OVERHEAD_BYTES`; plus :data:`META_BYTES` for the snapshot. What a snapshot takes is
    measured the same way with its actual arrays (:func:`_check_size`), so a valid snapshot never
    exceeds its run's budget.
    """
    return (META_BYTES + sum(_tensor_budget(n, s, packed_mask=True) for n, s in shapes.items())
            + sum(_tensor_budget(n, s, packed_mask=False) for n, s in (dense_shapes or {}).items()))


def _tensor_budget(name: str, shape: tuple[int, ...], *, packed_mask: bool) -> int:
    numel = math.prod(shape)
    return (TENSOR_OVERHEAD_BYTES + 4 * len(name) + 8 * len(shape) + packed_mask * ((numel + 7) // 8)
            + 4 * numel + DECODED_BYTES_PER_ELEMENT * numel)


@dataclass(frozen=True)
class Snapshot:
    """One ``snapshots/step_XXXXXXXX.npz``: its ``meta`` fields, and :meth:`load` for the tensors.

    ``max_bytes`` is the most the snapshot may take decoded (the run's budget); ``dense_tensors``:
    the dense Linear/Conv weights stored beside the sparse ``tensors`` (none in older snapshots).
    """

    path: Path
    step: int
    epoch: float
    test_acc: float | None
    reason: str
    tensors: tuple[str, ...]
    max_bytes: int
    dense_tensors: tuple[str, ...] = ()

    def iter_tensors(self, data: bytes | None = None, *, dense: bool = False
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, mask, weight)`` one tensor at a time, validating each.

        ``data``: the file's bytes when the caller has already read them (decoded from memory).
        ``dense``: after the sparse tensors, also the dense weights (``dense_tensors``), each with an
        all-True mask (a complete bipartite graph).
        """
        for name, mask, values in self.iter_values(data, dense=dense):
            weight = np.zeros(mask.shape, dtype=np.float32)
            weight[mask] = values
            yield name, mask, weight

    def iter_values(self, data: bytes | None = None, *, dense: bool = False, sparse: bool = True
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """:meth:`iter_tensors` as stored: ``(name, mask, values)``, ``values`` the float32 weights at
        the mask's nonzeros in C order (what :func:`sift_graph.layer.masked_layer_metrics` takes).
        ``sparse=False`` leaves the sparse tensors out (with ``dense``: the dense weights only)."""
        with _snapshot_errors(self.path), open_npz(self.path if data is None else data) as zf:
            names = set(zf.namelist())
            shapes = _check_size(zf, self.tensors + self.dense_tensors, self.path, self.max_bytes, names)
            for name in self.tensors if sparse else ():
                yield (name, *_decode_tensor(zf, name, shapes[name], self.path, self.max_bytes, names))
            for name in self.dense_tensors if dense else ():
                yield (name, *_decode_dense(zf, name, shapes[name], self.path, self.max_bytes, names))

    def load(self, data: bytes | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{name: (mask, weight)}``: bool mask and float32 weight in PyTorch layout, weight 0 off-mask."""
        return {name: (mask, weight) for name, mask, weight in self.iter_tensors(data)}


@dataclass(frozen=True)
class Run:
    """A run folder. ``meta`` is the whole ``config.json``, :attr:`config` its ``"config"`` entry (the
    TrainConfig fields); ``finished``: ``done.json`` exists (training ended); ``problems``: one line
    per snapshot left out (``strict=False``)."""

    path: Path
    meta: dict
    metrics: pd.DataFrame
    snapshots: list[Snapshot]
    finished: bool
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict:
        return self.meta["config"]


def load_run(path: str | Path, *, strict: bool = True, max_snapshot_bytes: int | None = None) -> Run:
    """Read ``config.json``, ``metrics.csv`` and the snapshot headers of the run folder ``path``.

    Snapshots are ordered by step. With ``strict=True`` (default) the first bad snapshot raises
    :class:`RunFormatError`; with ``strict=False`` bad snapshots are left out and their one-line
    messages collected in ``Run.problems``. A bad ``config.json`` or ``metrics.csv`` always raises.
    ``max_snapshot_bytes`` overrides the per-snapshot limit derived from ``config.json``'s
    ``sparse_tensors`` and ``dense_tensors`` shapes (:func:`snapshot_budget`). Tensor data are checked
    when a snapshot is loaded (:meth:`Snapshot.load`).
    """
    path = Path(path)
    if not path.is_dir():
        raise RunFormatError(f"{path}: not a directory")
    meta = _read_config(path / "config.json")
    config = path / "config.json"
    limit = max_snapshot_bytes or snapshot_budget(_declared_shapes(meta, config),
                                                  _declared_shapes(meta, config, "dense_tensors"))
    metrics = _read_metrics(path / "metrics.csv")
    snapshots, problems = [], []
    snap_dir = path / "snapshots"
    if snap_dir.exists() and not snap_dir.is_dir():
        problem = f"{snap_dir}: not a folder (snapshots/ must be a folder of step_XXXXXXXX.npz files)"
        if strict:
            raise RunFormatError(problem)
        problems.append(problem)
    steps: dict[int, Path] = {}
    for file in sorted(snap_dir.glob("step_*.npz")) if snap_dir.is_dir() else []:
        try:
            snapshot = read_snapshot_meta(file, max_bytes=limit)
            if snapshot.step in steps:
                raise RunFormatError(f"{file}: step {snapshot.step} already has {steps[snapshot.step].name}")
        except RunFormatError as exc:
            if strict:
                raise
            problems.append(str(exc))
            continue
        steps[snapshot.step] = file
        snapshots.append(snapshot)
    snapshots.sort(key=lambda s: s.step)
    return Run(path=path, meta=meta, metrics=metrics, snapshots=snapshots,
               finished=(path / "done.json").is_file(), problems=problems)


def read_snapshot_meta(file: Path, *, max_bytes: int) -> Snapshot:
    """Read and check the ``meta`` entry of a snapshot file, and its size against ``max_bytes``."""
    match = _SNAPSHOT_NAME.match(file.name)
    if match is None:
        raise RunFormatError(f"{file}: snapshot file name must be step_XXXXXXXX.npz (8+ digits)")
    with _snapshot_errors(file), open_npz(file) as zf:
        if "meta.npy" not in zf.namelist():
            raise RunFormatError(f"{file}: no 'meta' entry")
        raw = read_member(zf, "meta", max_bytes=META_BYTES)
        if raw.dtype.kind != "U" or raw.shape != ():
            raise RunFormatError(f"{file}: meta must be a 0-d string array, got {raw.dtype} {raw.shape}")
        try:
            meta = json.loads(str(raw[()]))
        except (ValueError, RecursionError) as exc:
            raise RunFormatError(f"{file}: meta is not valid JSON ({exc})") from None
        fields = _check_meta(meta, file)
        if fields["step"] != int(match.group(1)):
            raise RunFormatError(f"{file}: meta step {fields['step']} does not match the file name")
        _check_size(zf, fields["tensors"] + fields["dense_tensors"], file, max_bytes)
    return Snapshot(path=file, max_bytes=max_bytes, **fields)


def _show(value) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_meta(meta, file: Path) -> dict:
    """The typed fields of a snapshot's meta, or a RunFormatError naming the field and the rule."""
    if not isinstance(meta, dict):
        raise RunFormatError(f"{file}: meta must be a JSON object, got {_show(meta)}")
    missing = [k for k in ("step", "epoch", "tensors") if k not in meta]
    if missing:
        raise RunFormatError(f"{file}: meta lacks {', '.join(missing)}")
    step, epoch, test_acc = meta["step"], meta["epoch"], meta.get("test_acc")
    reason, tensors = meta.get("reason", ""), meta["tensors"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise RunFormatError(f"{file}: meta step must be an integer >= 0, got {_show(step)}")
    if not _is_number(epoch) or epoch < 0:
        raise RunFormatError(f"{file}: meta epoch must be a finite number >= 0, got {_show(epoch)}")
    if test_acc is not None and not _is_number(test_acc):
        raise RunFormatError(f"{file}: meta test_acc must be a finite number or null, got {_show(test_acc)}")
    if not isinstance(reason, str):
        raise RunFormatError(f"{file}: meta reason must be a string, got {_show(reason)}")
    if not isinstance(tensors, list) or not all(isinstance(t, str) for t in tensors):
        raise RunFormatError(f"{file}: meta tensors must be a list of tensor names, got {_show(tensors)}")
    if len(set(tensors)) != len(tensors):
        raise RunFormatError(f"{file}: meta tensors lists a name twice")
    dense = meta.get("dense_tensors", [])
    if not isinstance(dense, list) or not all(isinstance(t, str) for t in dense):
        raise RunFormatError(f"{file}: meta dense_tensors must be a list of tensor names, got {_show(dense)}")
    if len(set(dense)) != len(dense) or set(dense) & set(tensors):
        raise RunFormatError(f"{file}: meta dense_tensors lists a name twice or a sparse tensor's name")
    return {"step": step, "epoch": float(epoch), "test_acc": None if test_acc is None else float(test_acc),
            "reason": reason, "tensors": tuple(tensors), "dense_tensors": tuple(dense)}


def _check_size(zf: zipfile.ZipFile, tensors, file: Path, max_bytes: int,
                names: set[str] | None = None) -> dict[str, tuple[int, ...]]:
    """Refuse a snapshot whose members' declared sizes plus decoded tensors exceed ``max_bytes``;
    return the tensors' checked shapes (``names``: the archive's member names, if known)."""
    names = set(zf.namelist()) if names is None else names
    size = declared_bytes(zf)
    shapes = {name: _read_shape(zf, name, file, names) for name in tensors}
    for shape in shapes.values():
        size += DECODED_BYTES_PER_ELEMENT * math.prod(shape)
    if size > max_bytes:
        raise RunFormatError(
            f"{file}: snapshot would take {size} bytes decoded, over the limit of {max_bytes} "
            f"(derived from config.json's sparse_tensors and dense_tensors shapes; "
            f"--max-snapshot-bytes raises it)")
    return shapes


@contextlib.contextmanager
def _snapshot_errors(file: Path):
    """Report any read error of the snapshot ``file`` as a one-line :class:`RunFormatError`."""
    try:
        yield
    except RunFormatError:
        raise
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise RunFormatError(f"{file}: corrupt or truncated snapshot ({exc})") from None


def _check_file_size(file: Path, limit: int) -> None:
    """A :class:`RunFormatError` if ``file`` is over ``limit`` bytes or cannot be stat'ed."""
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise RunFormatError(f"{file}: unreadable ({exc})") from None
    if size > limit:
        raise RunFormatError(f"{file}: {size} bytes, over the limit of {limit} for this file")


def _read_config(file: Path) -> dict:
    if not file.is_file():
        raise RunFormatError(f"{file}: missing (every run folder needs a config.json)")
    _check_file_size(file, CONFIG_MAX_BYTES)
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise RunFormatError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunFormatError(f"{file}: not a sift run config (expected \"format\": \"{FORMAT}\")")
    if meta.get("format_version") not in FORMAT_VERSIONS:
        raise RunFormatError(
            f"{file}: unknown format_version {_show(meta.get('format_version'))} "
            f"(this sift reads {', '.join(map(str, FORMAT_VERSIONS))})"
        )
    if not isinstance(meta.get("config"), dict):
        raise RunFormatError(f"{file}: missing the \"config\" object")
    return meta


def _declared_shapes(meta: dict, file: Path, key: str = "sparse_tensors") -> dict[str, tuple[int, ...]]:
    """Shapes of ``config.json``'s ``key`` (``sparse_tensors`` or ``dense_tensors``; absent: none)."""
    declared = meta.get(key, {})
    if not isinstance(declared, dict):
        raise RunFormatError(f"{file}: {key} must be an object, got {_show(declared)}")
    shapes = {}
    for name, entry in declared.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (not isinstance(shape, list) or not 1 <= len(shape) <= _MAX_DIMS
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise RunFormatError(f"{file}: {key} {name}: shape must be a list of positive "
                                 f"integers, got {_show(shape)}")
        shapes[name] = tuple(shape)
    return shapes


def _read_metrics(file: Path) -> pd.DataFrame:
    """``metrics.csv``; an empty frame with the documented header if the run has not evaluated yet."""
    if not file.is_file():
        return pd.DataFrame({c: pd.Series(dtype=float) for c in METRICS_COLUMNS})
    _check_file_size(file, METRICS_MAX_BYTES)
    try:
        df = pd.read_csv(file)
    except (OSError, ValueError) as exc:
        raise RunFormatError(f"{file}: unreadable CSV ({exc})") from None
    missing = [c for c in ("step", "test_acc") if c not in df.columns]
    if missing:
        raise RunFormatError(f"{file}: missing column(s) {', '.join(missing)}")
    for column in ("step", "test_acc"):
        numbers = pd.to_numeric(df[column], errors="coerce")
        bad = numbers.isna() & df[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise RunFormatError(f"{file}: column {column}, row {row + 1}: {df[column].iloc[row]!r} "
                                 f"is not a number")
        df[column] = numbers
    return df


def _read_shape(zf: zipfile.ZipFile, name: str, file: Path, names: set[str]) -> tuple[int, ...]:
    key = f"{name}/shape"
    if f"{key}.npy" not in names:
        raise RunFormatError(f"{file}: tensor {name}: missing {key}")
    shape = read_member(zf, key, max_bytes=1024 + 8 * _MAX_DIMS)
    if shape.ndim != 1 or shape.dtype.kind not in "iu" or not 1 <= shape.size <= _MAX_DIMS or not (shape > 0).all():
        raise RunFormatError(f"{file}: tensor {name}: {key} must be 1 to {_MAX_DIMS} positive integers")
    return tuple(int(s) for s in shape)


def _decode_tensor(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], file: Path, max_bytes: int,
                   names: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Unpack one tensor (``<name>/mask``, ``/values``, of the checked ``shape``) and check it
    (run-format.md): the bool mask and the float32 values at its nonzeros (C order)."""
    missing = [k for k in (f"{name}/mask", f"{name}/values") if f"{k}.npy" not in names]
    if missing:
        raise RunFormatError(f"{file}: tensor {name}: missing {', '.join(missing)}")
    bits = read_member(zf, f"{name}/mask", max_bytes=max_bytes)
    numel = math.prod(shape)
    if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (numel + 7) // 8:
        raise RunFormatError(
            f"{file}: tensor {name}: mask has {bits.size} bytes ({bits.dtype}), "
            f"expected {(numel + 7) // 8} uint8 for shape {shape}"
        )
    mask = np.unpackbits(bits, count=numel, bitorder="big").view(bool).reshape(shape)
    n_active = int(np.count_nonzero(mask))
    values = _read_values(zf, name, file, max_bytes, n_active, "active mask positions")
    return mask, values.astype(np.float32, copy=False)


def _read_values(zf: zipfile.ZipFile, name: str, file: Path, max_bytes: int, count: int,
                 what: str) -> np.ndarray:
    """``<name>/values``: ``count`` finite floats, one per ``what`` (run-format.md)."""
    values = read_member(zf, f"{name}/values", max_bytes=max_bytes)
    if values.dtype.kind != "f":
        raise RunFormatError(f"{file}: tensor {name}: values must be floating point, got {values.dtype}")
    if values.ndim != 1 or values.size != count:
        raise RunFormatError(f"{file}: tensor {name}: {values.size} values for {count} {what}")
    if not np.all(np.isfinite(values)):
        raise RunFormatError(f"{file}: tensor {name}: NaN or infinite weights")
    return values


def _decode_dense(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], file: Path, max_bytes: int,
                  names: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """One dense weight (``<name>/values``: every entry of the checked ``shape``) as an all-True mask
    and its values."""
    if f"{name}/values.npy" not in names:
        raise RunFormatError(f"{file}: dense tensor {name}: missing {name}/values")
    values = _read_values(zf, name, file, max_bytes, math.prod(shape), "entries of the dense weight")
    return np.ones(shape, dtype=bool), values.astype(np.float32, copy=False)
