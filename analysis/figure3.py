"""Sparse-IFT Figure 3: Pareto-curvature heatmaps of test accuracy over (Δr_imdb, λ_imsg) and (Δr, λ).

    python analysis/figure3.py RUNS [--out DIR] [--family wide parallel] [--sparsity 0.5] [--format png]
                               [--snapshots all|epochs|final]

Analyses RUNS with ``sift_graph.analyze`` (cached: a second call recomputes nothing), keeps the
snapshots of the requested families (and sparsity), and writes one heatmap per family and pair,
``figure3_<family>_<pair>.<format>`` (specs/metrics.md §7: one point per snapshot, linear griddata
with rescale on a 100x100 grid, coolwarm over [min, max] accuracy, Pareto front as a sift addition),
with each run's path through the plane in training order. ``--snapshots epochs`` keeps init, epoch
ends and final (the same points in every run), ``final`` one point per run.
"""
from __future__ import annotations

from common import summary_from_args

from sift_graph import plots

PAIRS = (("delta_r_imdb", "lambda_imsg", "imdb-imsg"), ("delta_r", "lambda", "full"))


def main(argv=None) -> None:
    args, out, summary = summary_from_args(__doc__, argv)
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
