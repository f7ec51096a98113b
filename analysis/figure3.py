"""Sparse-IFT Figure 3: Pareto-curvature heatmaps of test accuracy over (Δr_imdb, λ_imsg) and (Δr, λ).

    python analysis/figure3.py RUNS [--out DIR] [--family wide parallel] [--sparsity 0.5] [--format png]

Analyses RUNS with ``sift_graph.analyze`` (cached: a second call recomputes nothing), keeps the
snapshots of the requested families (and sparsity), and writes one heatmap per family and pair,
``figure3_<family>_<pair>.<format>`` (specs/metrics.md §7: one point per snapshot, linear griddata
with rescale on a 100x100 grid, coolwarm over [min, max] accuracy, Pareto front as a sift addition).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import sift_graph
from sift_graph import plots

PAIRS = (("delta_r_imdb", "lambda_imsg", "imdb-imsg"), ("delta_r", "lambda", "full"))


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
    for family in args.family or sorted(summary["family"].unique()):
        sub = summary[summary["family"] == family]
        if sub.empty:
            print(f"no snapshots of family {family!r}")
            continue
        for x, y, tag in PAIRS:
            fig = plots.pareto_heatmap(sub, x=x, y=y, title=f"Sparse {family.capitalize()}")
            path = out / f"figure3_{family}_{tag}.{args.format}"
            plots.save(fig, path)
            print(path)


if __name__ == "__main__":
    main()
