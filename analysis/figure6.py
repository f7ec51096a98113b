"""Sparse-IFT Figure 6: Δr, Δr_imdb, λ, λ_imsg and test accuracy over training, one line per run.

    python analysis/figure6.py RUNS [--out DIR] [--family wide parallel] [--sparsity 0.5] [--format png]

Analyses RUNS with ``sift_graph.analyze`` (cached) and writes ``figure6.<format>``: one panel per
layer-mean metric and one for test accuracy, against the training step; runs of one family share a
colour.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import sift_graph
from sift_graph import plots


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, help="default: RUNS/sift-analysis")
    parser.add_argument("--family", nargs="+", default=None, help="default: every family found")
    parser.add_argument("--sparsity", type=float, default=None, help="keep only runs at this sparsity")
    parser.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    args = parser.parse_args(argv)
    out = args.out or args.runs / "sift-analysis"
    _, summary = sift_graph.analyze([args.runs], out=out, figures=False)
    if args.sparsity is not None:
        summary = summary[(summary["sparsity"] - args.sparsity).abs() < 1e-9]
    if args.family:
        summary = summary[summary["family"].isin(args.family)]
    if summary.empty:
        raise SystemExit("error: no snapshots left after the --family/--sparsity filters")
    fig = plots.trajectories(summary, metrics=("delta_r", "delta_r_imdb", "lambda", "lambda_imsg"))
    path = out / f"figure6.{args.format}"
    plots.save(fig, path)
    print(path)


if __name__ == "__main__":
    main()
