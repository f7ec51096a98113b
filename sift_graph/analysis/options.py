"""Every input of ``analyze``, checked once at the boundary before any work is done."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..layer import CONVENTIONS, layer_metrics
from ..validation import check_device, check_device_name

FORMATS = ("png", "svg", "pdf")
INVALID_RULES = ("skip", "zero")
#: ``--layers``: the sparse tensors only (sift's default) or every Conv/Linear layer, dense ones
#: included (the reference analyses' model-level metric; ``docs/analyze.md`` § Layers).
LAYER_MODES = ("sparse", "all")
DASK_EXTRA = "pip install 'sift[dask]'"
#: Default metric of the per-layer heatmaps, per convention.
DEFAULT_LAYER_METRIC = {"hoang2023a": "delta_r_imdb", "hoang2023b": "imdb"}


class UsageError(ValueError):
    """An input of ``analyze`` is unusable (the CLI's exit status 2); the message is one line."""


@dataclass(frozen=True)
class AnalyzeOptions:
    """Validated inputs of :func:`sift_graph.pipeline.run_analysis` (see its docstring)."""

    paths: tuple[Path, ...]
    out: Path
    jobs: int
    convention: str
    layers: str
    invalid: str
    figures: bool
    fmt: str
    layer_metric: str
    device: str
    max_snapshot_bytes: int | None
    progress: bool


def layer_metric_columns(convention: str) -> tuple[str, ...]:
    """Numeric per-layer columns of ``layers.csv`` under ``convention``: ``density`` and every number
    :func:`sift_graph.layer_metrics` returns (asked of the function itself on a 1x1 layer)."""
    probe = layer_metrics(np.ones((1, 1), bool), np.ones((1, 1)), convention=convention)
    return ("density", *(k for k, v in probe.items() if not isinstance(v, str)))


def _cores() -> int:
    """CPU cores this process may use (affinity-aware where the OS supports it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _one_of(value, allowed, what: str):
    if value not in allowed:
        raise UsageError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def distributed_module():
    """``dask.distributed``, or a :class:`UsageError` naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise UsageError(f"the Dask route needs dask.distributed: {DASK_EXTRA}") from None
    return distributed


def _check_device(device: str, *, local: bool) -> str:
    """``cpu`` or ``cuda[:N]``; with ``local`` (no cluster) a CUDA device this torch can see
    (:func:`sift_graph.validation.check_device`), else only the name (the workers have the GPUs)."""
    try:
        return check_device(device) if local else check_device_name(device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_output(out: Path) -> None:
    """``out`` is, or can become, a writable folder (nothing is created yet)."""
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UsageError(f"{existing}: exists and is not a folder (output folder {out})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{existing}: not writable (output folder {out})")


def make_options(paths, *, out=None, jobs=None, convention="hoang2023a", layers="sparse", invalid="skip",
                 figures=True,
                 fmt="png", layer_metric=None, device="cpu", max_snapshot_bytes=None, progress=True,
                 client=None) -> AnalyzeOptions:
    """Check every input of ``analyze``; raise :class:`UsageError` (one line) for the first bad one.

    ``client``: a Dask client or scheduler address (the cluster is reached later, if work is left).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or ())
    if not paths:
        raise UsageError("no path given")
    paths = tuple(Path(p) for p in paths)
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        if not path.is_dir():
            raise UsageError(f"{path}: not a directory (expected a run folder or a folder of runs)")
    _one_of(convention, CONVENTIONS, "convention")
    _one_of(layers, LAYER_MODES, "layers choice")
    _one_of(invalid, INVALID_RULES, "invalid-layer rule")
    _one_of(fmt, FORMATS, "figure format")
    metric = DEFAULT_LAYER_METRIC[convention] if layer_metric is None else layer_metric
    _one_of(metric, layer_metric_columns(convention), f"layer metric for {convention}")
    distributed = client is not None
    if distributed and jobs is not None:
        raise UsageError("jobs applies to local worker processes; a Dask cluster sets its own workers")
    if isinstance(client, str):
        distributed_module()  # only whether it is installed
    device = _check_device(device, local=not distributed)
    if jobs is None:  # on a GPU one process: the GPU does the parallel work
        jobs = 1 if device != "cpu" else _cores()
    jobs = _positive_int(jobs, "jobs")
    if max_snapshot_bytes is not None:
        max_snapshot_bytes = _positive_int(max_snapshot_bytes, "max_snapshot_bytes")
    out = Path(out) if out is not None else paths[0] / "sift-analysis"
    _check_output(out)
    return AnalyzeOptions(paths=paths, out=out, jobs=jobs, convention=convention, layers=layers,
                          invalid=invalid,
                          figures=bool(figures), fmt=fmt, layer_metric=metric, device=device,
                          max_snapshot_bytes=max_snapshot_bytes, progress=bool(progress))
