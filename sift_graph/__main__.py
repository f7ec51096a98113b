"""python -m sift_graph analyze PATH [PATH ...]: metrics, tables and figures for run folders.

Exit status: 0 if everything was analysed, 1 if a run or snapshot was skipped (each reported on one
line), 2 for a usage error (nonexistent path, no runs found, unknown option).
"""
from __future__ import annotations

import argparse
import sys

from .pipeline import CONVENTIONS, run_analysis


def _analyze(args) -> int:
    result = run_analysis(args.paths, out=args.out, jobs=args.jobs, convention=args.convention,
                          invalid=args.invalid, figures=not args.no_figures, fmt=args.format,
                          layer_metric=args.layer_metric, progress=not args.quiet)
    for problem in result.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    runs = result.summary["run"].nunique() if "run" in result.summary else 0
    print(f"{runs} runs, {len(result.summary)} snapshots ({result.computed} computed, "
          f"{result.cached} cached), {len(result.problems)} skipped -> {result.out}")
    return 1 if result.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sift_graph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("analyze", help="Ramanujan metrics of every snapshot of every run under PATH")
    p.add_argument("paths", nargs="+", metavar="PATH", help="run folder(s) or folder(s) of runs")
    p.add_argument("--out", help="output folder (default: <first PATH>/sift-analysis)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--format", default="png", choices=("png", "svg", "pdf"), help="figure format")
    p.add_argument("--convention", default="hoang2023a", choices=CONVENTIONS,
                   help="metric convention (specs/metrics.md §9.1)")
    p.add_argument("--invalid", default="skip", choices=("skip", "zero"),
                   help="layer mean over valid layers only (skip) or with invalid layers as 0 (zero)")
    p.add_argument("--layer-metric", default=None,
                   help="metric of the per-layer heatmaps (default: delta_r_imdb; imdb for hoang2023b)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_analyze)
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be >= 1")
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
