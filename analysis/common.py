"""Command line and data shared by the figure scripts: analyse RUNS (cached) and filter the summary."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import sift_graph
from sift_graph import plots


def summary_from_args(doc: str, argv=None) -> tuple[argparse.Namespace, Path, pd.DataFrame]:
    """Parse ``RUNS [--out] [--family ...] [--sparsity] [--format] [--snapshots]``; return (args, out, summary rows
    of the runs at that sparsity, all families: ``--family`` is applied by each script)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, help="default: RUNS/sift-analysis")
    parser.add_argument("--family", nargs="+", default=None, help="default: every family found")
    parser.add_argument("--sparsity", type=float, default=None, help="keep only runs at this sparsity")
    parser.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    parser.add_argument("--snapshots", default="all", choices=plots.SNAPSHOT_CHOICES,
                        help="snapshots drawn: all, epochs (init, epoch ends, final) or final (default all)")
    args = parser.parse_args(argv)
    out = args.out or args.runs / "sift-analysis"
    _, summary = sift_graph.analyze([args.runs], out=out, figures=False)
    if args.sparsity is not None:
        summary = summary[(summary["sparsity"] - args.sparsity).abs() < 1e-9]
    return args, out, plots.select_snapshots(summary, args.snapshots)
