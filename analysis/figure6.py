"""Sparse-IFT Figure 6: Δr, Δr_imdb, λ, λ_imsg and test accuracy over training, one line per run.

    python analysis/figure6.py RUNS [--out DIR] [--family wide parallel] [--sparsity 0.5] [--format png]

Analyses RUNS with ``sift_graph.analyze`` (cached) and writes ``figure6.<format>``: one panel per
layer-mean metric and one for test accuracy, against the training step; runs of one family share a
colour.
"""
from __future__ import annotations

from common import summary_from_args

from sift_graph import plots


def main(argv=None) -> None:
    args, out, summary = summary_from_args(__doc__, argv)
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
