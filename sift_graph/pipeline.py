"""``analyze``: run folders -> per-layer metrics -> ``layers.csv``, ``summary.csv`` and figures.

Data flow (``docs/analyze.md``): discover run folders, validate them (bad runs and snapshots are
reported and skipped), compute ``layer_metrics`` for every sparse tensor of every snapshot not in the
content-keyed cache (in parallel over snapshots), aggregate per snapshot (``specs/metrics.md`` §9.4)
and write the tables and figures.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import __version__
from .cache import SnapshotCache, atomic_write_text
from .layer import CONVENTIONS
from .model import aggregate_layers, layer_row
from .runs import Run, RunFormatError, Snapshot, load_run
from .stats import write_statistics

# The layer-mean metrics of each convention (specs/metrics.md §9.1) plotted as trajectories.
MAIN_METRICS = {
    "hoang2023a": ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg"),
    "hoang2023b": ("delta_r", "delta_s", "imdb", "imdb_norm", "narc"),
}
# Default metric of the per-layer heatmaps.
LAYER_METRIC = {"hoang2023a": "delta_r_imdb", "hoang2023b": "imdb"}
# (x, y, file tag) of the Pareto-curvature heatmaps (specs/metrics.md §7: both pairs).
HEATMAP_PAIRS = (("delta_r_imdb", "lambda_imsg", "imdb-imsg"), ("delta_r", "lambda", "full"))
GROUP_KEYS = ("family", "method")
_LIMITS = None  # threadpoolctl limits of a worker process, kept alive for its lifetime


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


def find_runs(paths) -> tuple[list[Path], list[str]]:
    """Every folder holding a ``config.json`` under ``paths`` (recursively; a path may be a run).

    Also reports folders that hold snapshots but no ``config.json``. Raises FileNotFoundError for a
    path that does not exist.
    """
    runs, problems = [], []
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or directory")
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: not a directory (expected a run folder or a folder of runs)")
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            if "config.json" in filenames:
                runs.append(here)
                dirnames.clear()
            elif here.name == "snapshots" and any(f.endswith(".npz") for f in filenames):
                problems.append(f"{here.parent / 'config.json'}: missing (folder has snapshots)")
                dirnames.clear()
            else:
                dirnames.sort()
    return sorted(dict.fromkeys(runs)), problems


def _run_labels(runs: list[Path]) -> dict[Path, str]:
    """Folder names if unique, else paths relative to the runs' common parent."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return dict(zip(runs, names))
    base = Path(os.path.commonpath([r.resolve() for r in runs]))
    return {r: r.resolve().relative_to(base.parent).as_posix() for r in runs}


def _cores() -> int:
    """CPU cores this process may use (affinity-aware where the OS supports it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pin_threads() -> None:
    """Worker initializer: one BLAS / torch thread per process (parallelism is over snapshots)."""
    import sys

    from threadpoolctl import threadpool_limits

    global _LIMITS
    _LIMITS = threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def snapshot_layer_rows(snapshot: Snapshot, convention: str) -> list[dict]:
    """``layer_metrics`` of every tensor of one snapshot: one row (dict) per layer."""
    return [layer_row(name, mask, weight, convention=convention)
            for name, mask, weight in snapshot.iter_tensors()]


def _compute(snapshot: Snapshot, convention: str) -> tuple[list[dict] | None, str]:
    try:
        return snapshot_layer_rows(snapshot, convention), ""
    except RunFormatError as exc:
        return None, str(exc)
    except ValueError as exc:
        return None, f"{snapshot.path}: {exc}"


def _compute_all(todo, convention, jobs, progress, on_result) -> None:
    """Run ``_compute`` over ``todo`` [(key, snapshot)], in-process or in a forkserver pool."""
    bar = tqdm(total=len(todo), unit="snapshot", desc="sift analyze", disable=not progress or not todo)
    try:
        if jobs <= 1 or len(todo) <= 1:
            for key, snap in todo:
                on_result(key, *_compute(snap, convention))
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("forkserver"),
                                 initializer=_pin_threads) as pool:
            futures = {pool.submit(_compute, snap, convention): key for key, snap in todo}
            try:
                for future in as_completed(futures):
                    on_result(futures[future], *future.result())
                    bar.update()
            except BrokenProcessPool:
                raise RuntimeError(
                    "an analysis worker process died (out of memory, or a script calling analyze with "
                    "jobs > 1 without an `if __name__ == '__main__':` guard); finished snapshots are "
                    "cached, retry with fewer jobs") from None
    finally:
        bar.close()


def _test_acc(run: Run, snap: Snapshot) -> float:
    """The snapshot's own test accuracy, else ``metrics.csv``'s at the same step, else NaN."""
    if snap.test_acc is not None:
        return snap.test_acc
    rows = run.metrics[run.metrics["step"] == snap.step]["test_acc"].dropna()
    return float(rows.iloc[-1]) if len(rows) else float("nan")


def _config_columns(config: dict, taken) -> dict:
    return {k: v for k, v in config.items()
            if k not in taken and (v is None or isinstance(v, (str, int, float, bool)))}


def run_analysis(paths, *, out=None, jobs: int | None = None, convention: str = "hoang2023a",
                 invalid: str = "skip", figures: bool = True, fmt: str = "png",
                 layer_metric: str | None = None, progress: bool = True) -> Analysis:
    """Analyse every run under ``paths``; write tables (and figures) to ``out``. See :func:`analyze`."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    if invalid not in ("skip", "zero"):
        raise ValueError(f"unknown invalid-layer rule {invalid!r}; expected 'skip' or 'zero'")
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not paths:
        raise ValueError("no path given")
    run_dirs, problems = find_runs(paths)
    if not run_dirs and not problems:
        raise FileNotFoundError(f"no run folders (with a config.json) under {', '.join(map(str, paths))}")
    out = Path(out) if out is not None else paths[0] / "sift-analysis"
    runs = []
    for path in run_dirs:
        try:
            run = load_run(path, strict=False)
        except RunFormatError as exc:
            problems.append(str(exc))
            continue
        problems.extend(run.problems)
        runs.append(run)
    labels = _run_labels([r.path for r in runs])

    cache = SnapshotCache(out / "cache", convention, __version__)
    results: dict[tuple, list[dict]] = {}
    todo = []
    for run in runs:
        for snap in run.snapshots:
            key = (labels[run.path], snap.step)
            try:
                sha = cache.key(snap.path)
            except OSError as exc:
                problems.append(f"{snap.path}: unreadable ({exc})")
                continue
            rows = cache.get(sha)
            if rows is None:
                todo.append(((key, sha), snap))
            else:
                results[key] = rows
    analysis = Analysis(layers=pd.DataFrame(), summary=pd.DataFrame(), out=out, problems=problems,
                        cached=len(results))

    def on_result(key_sha, rows, error):
        key, sha = key_sha
        if error:
            problems.append(error)
            return
        cache.put(sha, rows)
        results[key] = rows
        analysis.computed += 1

    try:
        _compute_all(todo, convention, jobs or _cores(), progress, on_result)
    finally:
        cache.save_index()

    layer_rows, summary_rows = [], []
    for run in runs:
        label = labels[run.path]
        for snap in run.snapshots:
            rows = results.get((label, snap.step))
            if rows is None:
                continue
            ids = {"run": label, "step": snap.step, "epoch": snap.epoch}
            frame = pd.DataFrame([{**ids, **r} for r in rows])
            layer_rows.append(frame)
            summary = {**ids, "test_acc": _test_acc(run, snap), "snapshot_reason": snap.reason,
                       **aggregate_layers(frame, invalid=invalid)}
            summary.update(_config_columns(run.config, summary))
            summary["run_path"] = str(run.path)
            summary_rows.append(summary)
    analysis.layers = pd.concat(layer_rows, ignore_index=True) if layer_rows else pd.DataFrame()
    analysis.summary = pd.DataFrame(summary_rows)
    atomic_write_text(out / "layers.csv", analysis.layers.to_csv(index=False))
    atomic_write_text(out / "summary.csv", analysis.summary.to_csv(index=False))
    if not analysis.summary.empty:
        write_statistics(analysis.summary, out)  # groups.csv, comparisons.csv (seed statistics)
    if figures and not analysis.summary.empty:
        write_figures(analysis, convention, fmt, layer_metric)
    return analysis


def analyze(paths, *, out=None, jobs: int | None = None, convention: str = "hoang2023a",
            invalid: str = "skip", figures: bool = True, fmt: str = "png",
            layer_metric: str | None = None, progress: bool = True):
    """Ramanujan metrics of every sparse layer of every snapshot of every run under ``paths``.

    Writes ``layers.csv``, ``summary.csv`` and (unless ``figures=False``) the figures to ``out``
    (default ``<first path>/sift-analysis/``); returns ``(layers_df, summary_df)``. ``jobs``
    processes (default: all cores) compute the snapshots missing from the cache in ``out/cache``.
    ``invalid`` is the layer aggregation (``specs/metrics.md`` §9.4): ``"skip"`` averages valid layers
    only, ``"zero"`` counts invalid layers as 0. Bad runs/snapshots are skipped; use
    :func:`run_analysis` to get their messages and the computed/cached counts.
    """
    result = run_analysis(paths, out=out, jobs=jobs, convention=convention, invalid=invalid,
                          figures=figures, fmt=fmt, layer_metric=layer_metric, progress=progress)
    return result.layers, result.summary


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def write_figures(analysis: Analysis, convention: str, fmt: str = "png",
                  layer_metric: str | None = None) -> None:
    """Heatmaps (all runs + per family/method), trajectories, and one layer heatmap per run."""
    from . import plots

    summary, folder = analysis.summary, analysis.out / "figures"
    metrics = [m for m in MAIN_METRICS[convention] if m in summary]
    metric = layer_metric or LAYER_METRIC[convention]
    if not analysis.layers.empty and metric not in analysis.layers:
        raise ValueError(f"unknown layer metric {metric!r}; choose a column of layers.csv, "
                         f"e.g. {', '.join(metrics)}")
    keys = [k for k in GROUP_KEYS if k in summary]
    groups = [("all", "All runs", summary)]
    if keys:
        for values, sub in summary.groupby(keys, dropna=False, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            name = " / ".join(f"{k}={v}" for k, v in zip(keys, values))
            groups.append(("-".join(map(str, values)), name, sub))
    for x, y, tag in HEATMAP_PAIRS:
        if x not in summary or y not in summary:
            missing = " or ".join(c for c in (x, y) if c not in summary)
            analysis.notes.append(f"no {tag} heatmap: convention {convention} has no {missing}")
            continue
        for slug, name, sub in groups:
            if not sub[[x, y, "test_acc"]].notna().all(axis=1).any():
                analysis.notes.append(f"no {tag} heatmap for {name}: no snapshot defines {x}, {y} and test_acc")
                continue
            fig = plots.pareto_heatmap(sub, x=x, y=y, title=name)
            title = fig.axes[0].get_title()
            if plots.NO_SURFACE in title:
                analysis.notes.append(f"heatmap {tag}: {title}")
            analysis.figures.append(plots.save(fig, folder / f"pareto_{tag}_{_slug(slug)}.{fmt}"))
    fig = plots.trajectories(summary, metrics=metrics)
    analysis.figures.append(plots.save(fig, folder / f"trajectories.{fmt}"))
    for run in summary["run"].unique():
        if analysis.layers.empty or not (analysis.layers["run"] == run).any():
            analysis.notes.append(f"no layer heatmap for {run}: it has no sparse tensors")
            continue
        fig = plots.layer_heatmap(analysis.layers, metric=metric, run=run)
        analysis.figures.append(plots.save(fig, folder / f"layers_{metric}_{_slug(run)}.{fmt}"))
