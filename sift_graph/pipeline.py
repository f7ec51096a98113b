"""``analyze``: run folders -> per-layer metrics -> ``layers.csv``, ``summary.csv`` and figures.

The stages, one module each under :mod:`sift_graph.analysis` (``docs/analyze.md``): check every
input; find the run folders; read and validate them (bad runs and snapshots are reported and
skipped); take what the content-keyed cache has; compute the rest (local worker processes or a Dask
cluster); aggregate per snapshot (``specs/metrics.md`` §9.4) into the tables; draw the figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .analysis.cache import SnapshotCache, look_up
from .analysis.compute import SnapshotResult, compute_local, compute_on_dask, dask_client
from .analysis.discovery import find_runs, run_labels
from .analysis.figures import write_figures
from .analysis.loading import load_runs
from .analysis.options import UsageError, make_options
from .analysis.tables import build_tables
from .files import atomic_write_text
from .stats import write_statistics

__all__ = ["Analysis", "analyze", "run_analysis"]


@dataclass
class Analysis:
    """Result of :func:`run_analysis`: the two tables plus what was computed, cached and skipped."""

    layers: pd.DataFrame
    summary: pd.DataFrame
    out: Path
    computed: int = 0
    cached: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def run_analysis(paths, *, out=None, jobs: int | None = None, convention: str = "hoang2023a",
                 layers: str = "sparse", invalid: str = "skip", figures: bool = True, fmt: str = "png",
                 layer_metric: str | None = None, progress: bool = True, device: str = "cpu",
                 max_snapshot_bytes: int | None = None, client=None) -> Analysis:
    """Analyse every run under ``paths``; write tables (and figures) to ``out``. See :func:`analyze`.

    Every input is checked before any work (:class:`~sift_graph.analysis.options.UsageError`).
    """
    options = make_options(paths, out=out, jobs=jobs, convention=convention, layers=layers, invalid=invalid,
                           figures=figures, fmt=fmt, layer_metric=layer_metric, device=device,
                           max_snapshot_bytes=max_snapshot_bytes, progress=progress,
                           client=client)
    found = find_runs(options.paths)
    if not found.runs and not found.problems:
        raise UsageError(f"no run folders (with a config.json) under {', '.join(map(str, options.paths))}")
    runs, problems = load_runs(found.runs, options.max_snapshot_bytes)
    labels = run_labels([run.path for run in runs])
    snapshots = {(labels[run.path], snap.step): snap for run in runs for snap in run.snapshots}

    (options.out / "cache").mkdir(parents=True, exist_ok=True)
    cache = SnapshotCache(options.out / "cache", options.convention, options.layers)
    results, todo, unreadable = look_up(cache, {key: snap.path for key, snap in snapshots.items()})
    analysis = Analysis(layers=pd.DataFrame(), summary=pd.DataFrame(), out=options.out,
                        problems=found.problems + problems + unreadable, notes=found.notes,
                        cached=len(results))

    def on_result(key, result: SnapshotResult) -> None:
        if result.rows is None:
            analysis.problems.append(result.problem)
            return
        if result.cached:
            analysis.cached += 1
        else:
            cache.put(result.sha256, result.rows)
            analysis.computed += 1
        cache.remember_read(snapshots[key].path, result.signature, result.sha256)
        results[key] = result.rows

    todo = {key: snapshots[key] for key in todo}
    route = dict(convention=options.convention, layers=options.layers, device=options.device,
                 on_result=on_result, progress=options.progress, entries=cache.entries)
    try:
        if client is None:
            compute_local(todo, workers=options.jobs, **route)
        elif todo:
            with dask_client(client) as connected:
                compute_on_dask(todo, client=connected, **route)
    finally:
        cache.save_index()

    analysis.layers, analysis.summary = build_tables(runs, labels, results, options.invalid, options.layers)
    atomic_write_text(options.out / "layers.csv", analysis.layers.to_csv(index=False))
    atomic_write_text(options.out / "summary.csv", analysis.summary.to_csv(index=False))
    if not analysis.summary.empty:
        write_statistics(analysis.summary, options.out)  # groups.csv, comparisons.csv (seed statistics)
    if options.figures and not analysis.summary.empty:
        analysis.figures, notes = write_figures(
            analysis.layers, analysis.summary, options.out / "figures", convention=options.convention,
            fmt=options.fmt, layer_metric=options.layer_metric)
        analysis.notes.extend(notes)
    return analysis


def analyze(paths, *, out=None, jobs: int | None = None, convention: str = "hoang2023a",
            layers: str = "sparse", invalid: str = "skip", figures: bool = True, fmt: str = "png",
            layer_metric: str | None = None, progress: bool = True, device: str = "cpu",
            max_snapshot_bytes: int | None = None, client=None):
    """Ramanujan metrics of every sparse layer of every snapshot of every run under ``paths``.

    ``layers``: ``"sparse"`` (default) the sparse tensors only; ``"all"`` also every dense Conv/Linear
    weight stored in the snapshots (mask all True: a complete bipartite graph weighted by |W|), the
    model-level metric of the reference analyses (``docs/analyze.md`` § Layers).

    Writes ``layers.csv``, ``summary.csv`` and (unless ``figures=False``) the figures to ``out``
    (default ``<first path>/sift-analysis/``); returns ``(layers_df, summary_df)``.

    ``jobs`` processes (default: all cores; 1 on a GPU) compute the snapshots missing from the cache
    in ``out/cache``; with ``client`` (a ``dask.distributed.Client``, or a scheduler address such as
    ``"tcp://host:8786"``) the Dask cluster computes them instead, with the same cache and the same
    tables. ``device`` (``"cpu"``, ``"cuda"``) is passed to
    :func:`sift_graph.layer_metrics`. ``invalid`` is the layer aggregation (``specs/metrics.md``
    §9.4): ``"skip"`` averages valid layers only, ``"zero"`` counts invalid layers as 0.
    ``max_snapshot_bytes`` overrides the per-snapshot size limit derived from each run's
    ``config.json``. Bad runs/snapshots are skipped; use :func:`run_analysis` to get their messages
    and the computed/cached counts. Raises ``UsageError`` (a ValueError) for a bad input.
    """
    result = run_analysis(paths, out=out, jobs=jobs, convention=convention, layers=layers, invalid=invalid,
                          figures=figures, fmt=fmt, layer_metric=layer_metric, progress=progress,
                          device=device, max_snapshot_bytes=max_snapshot_bytes, client=client)
    return result.layers, result.summary
