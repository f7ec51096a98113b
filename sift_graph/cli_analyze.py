"""``python -m sift_graph analyze PATH [PATH ...]``: a thin layer over :func:`sift_graph.run_analysis`."""
from __future__ import annotations

import argparse
import sys

from .analysis.options import DEFAULT_LAYER_METRIC, FORMATS, INVALID_RULES, LAYER_MODES
from .layer import CONVENTIONS
from .pipeline import run_analysis

HELP = "Ramanujan metrics, tables and figures of every snapshot of every run under PATH"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_parser(sub, parents) -> None:
    """Register ``analyze`` on the subcommand parsers ``sub``."""
    p = sub.add_parser("analyze", help=HELP, description=HELP + " (docs/analyze.md).", parents=parents)
    p.add_argument("paths", nargs="+", metavar="PATH", help="run folder(s) or folder(s) of runs")
    p.add_argument("--out", help="output folder (default: <first PATH>/sift-analysis)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="local worker processes (default: all cores; 1 with --device cuda)")
    p.add_argument("--dask-scheduler", metavar="ADDRESS", default=None,
                   help="compute on this Dask cluster instead (e.g. tcp://host:8786; needs sift[dask])")
    p.add_argument("--device", default="cpu", help="where layer_metrics runs: cpu (default), cuda, cuda:N")
    p.add_argument("--format", default="png", choices=FORMATS, help="figure format")
    p.add_argument("--convention", default="hoang2023a", choices=CONVENTIONS,
                   help="metric convention (specs/metrics.md §9.1)")
    p.add_argument("--layers", default="sparse", choices=LAYER_MODES,
                   help="sparse (default): the sparse tensors only; all: every Conv/Linear layer, dense "
                        "ones included (the reference analyses' model-level metric)")
    p.add_argument("--invalid", default="skip", choices=INVALID_RULES,
                   help="layer mean over valid layers only (skip) or with invalid layers as 0 (zero)")
    p.add_argument("--layer-metric", default=None,
                   help="column of layers.csv in the per-layer heatmaps "
                        f"(default: {DEFAULT_LAYER_METRIC['hoang2023a']}; "
                        f"{DEFAULT_LAYER_METRIC['hoang2023b']} for hoang2023b)")
    p.add_argument("--max-snapshot-bytes", type=_positive_int, default=None, metavar="N",
                   help="largest snapshot read, in bytes decoded (default: derived from each run's "
                        "config.json tensor shapes)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    """Analyse; print one ``skipped:`` line per input left out; 1 if any, else 0."""
    result = run_analysis(args.paths, out=args.out, jobs=args.jobs, convention=args.convention,
                          layers=args.layers, invalid=args.invalid, figures=not args.no_figures,
                          fmt=args.format,
                          layer_metric=args.layer_metric, progress=not args.quiet, device=args.device,
                          max_snapshot_bytes=args.max_snapshot_bytes, client=args.dask_scheduler)
    for problem in result.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    runs = result.summary["run"].nunique() if "run" in result.summary else 0
    print(f"{runs} runs, {len(result.summary)} snapshots ({result.computed} computed, "
          f"{result.cached} cached), {len(result.problems)} skipped -> {result.out}")
    return 1 if result.problems else 0
