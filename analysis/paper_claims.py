"""The Sparse-IFT paper's qualitative claims next to what a sweep shows, with numbers, CIs and verdicts.

    python analysis/paper_claims.py RUNS [--run] [--out DIR] [--markdown]

Reads RUNS/sift-analysis/summary.csv (or ``--out``); with ``--run`` it first trains the default
MNIST-1D sweep into RUNS (``python -m sift_train sweep --preset default``) and analyses it. Every claim
is a paired comparison on the same seeds (or a rank correlation over runs), reported with its 95 %
interval and a verdict: *supported* (interval on the paper's side of 0), *not supported* (interval on
the other side) or *inconclusive* (interval contains 0, or too few seeds).

Claims (paper sections; spec ``shared/specs/sparse-ift.md`` §7, ``metrics.md`` §1, §7):

1. DST beats static sparse training at each sparsity (paper Table 2 / §4.1: RigL > static).
2. Every Sparse-IFT family beats the dense model at equal FLOPs (paper §4.1, Table 1).
3. Sparse Wide is the best family at every sparsity (paper §4.3, Fig. 4).
4. §3.1 spectral trajectories, as read in metrics.md §7 [inferred]: high accuracy sits where
   Δr_imdb and λ_imsg are jointly large, so over a DST run λ_imsg and Δr_imdb should rise toward it.
5. The spectral metrics go with accuracy across runs: Spearman ρ(final λ_imsg, final accuracy) and
   ρ(final Δr_imdb, final accuracy) > 0, with a bootstrap CI.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sift_graph.stats import final_rows, mean_ci, paired_difference, spearman_ci

SUPPORTED, NOT, INCONCLUSIVE = "supported", "not supported", "inconclusive"


def verdict(ci_low: float, ci_high: float, sign: int = 1) -> str:
    """``sign = +1``: the paper says the quantity is > 0."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return INCONCLUSIVE
    lo, hi = (ci_low, ci_high) if sign > 0 else (-ci_high, -ci_low)
    return SUPPORTED if lo > 0 else NOT if hi < 0 else INCONCLUSIVE


def _pp(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{100 * v:+.1f}"


def _row(claim: str, scope: str, shows: str, lo: float, hi: float, n: int, sign: int = 1,
         scale: float = 100.0, unit: str = " pp") -> dict:
    ci = "-" if not np.isfinite(lo) else f"[{scale * lo:+.2f}, {scale * hi:+.2f}]{unit}"
    return {"claim": claim, "scope": scope, "data": shows, "95% CI": ci, "n": n,
            "verdict": verdict(lo, hi, sign)}


def _paired(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], col: str = "test_acc") -> dict:
    m = a.merge(b, on=keys, suffixes=("_a", "_b"))
    return {**paired_difference(m[f"{col}_a"], m[f"{col}_b"]), "a": m[f"{col}_a"].mean(),
            "b": m[f"{col}_b"].mean()}


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per claim and scope: what the paper says, what the data shows, CI, n, verdict."""
    final = final_rows(summary)
    sparse, dense = final[final["sparsity"] > 0], final[final["sparsity"] == 0]
    rows = []
    # 1. DST vs static, per sparsity, pooled over families (pairs: same family and seed)
    for s, sub in sparse.groupby("sparsity", sort=True):
        static = sub[sub["method"] == "static"]
        for method in sorted(set(sub["method"]) - {"static"}):
            d = _paired(sub[sub["method"] == method], static, ["family", "seed"])
            rows.append(_row(f"{method} > static", f"s={s:g}, all families",
                             f"{100 * d['a']:.1f} vs {100 * d['b']:.1f} % ({_pp(d['mean'])} pp)",
                             d["ci_low"], d["ci_high"], d["n"]))
            for family, fs in sub.groupby("family", sort=True):
                d = _paired(fs[fs["method"] == method], fs[fs["method"] == "static"], ["seed"])
                rows.append(_row(f"{method} > static", f"s={s:g}, {family}",
                                 f"{100 * d['a']:.1f} vs {100 * d['b']:.1f} % ({_pp(d['mean'])} pp)",
                                 d["ci_low"], d["ci_high"], d["n"]))
    # 2. each family vs dense (DST runs where present: the paper's Sparse-IFT results use RigL)
    if not dense.empty:
        dyn = sparse[sparse["method"] != "static"] if (sparse["method"] != "static").any() else sparse
        for (family, s, method), sub in dyn.groupby(["family", "sparsity", "method"], sort=True):
            d = _paired(sub, dense, ["seed"])
            rows.append(_row(f"{family} > dense", f"s={s:g}, {method}",
                             f"{100 * d['a']:.1f} vs {100 * d['b']:.1f} % ({_pp(d['mean'])} pp)",
                             d["ci_low"], d["ci_high"], d["n"]))
        # 3. Sparse Wide is the best family: wide minus the best other family, same seeds
        for (s, method), sub in dyn.groupby(["sparsity", "method"], sort=True):
            if "wide" not in set(sub["family"]) or sub["family"].nunique() < 2:
                continue
            means = sub.groupby("family")["test_acc"].mean().sort_values(ascending=False)
            other = means.drop("wide").index[0]
            d = _paired(sub[sub["family"] == "wide"], sub[sub["family"] == other], ["seed"])
            rows.append(_row("wide is the best family", f"s={s:g}, {method}",
                             f"best: {means.index[0]}; wide - {other} {_pp(d['mean'])} pp",
                             d["ci_low"], d["ci_high"], d["n"]))
    # 4. trajectories of DST runs: change from the first to the last snapshot
    for metric, name in (("lambda_imsg", "λ_imsg"), ("delta_r_imdb", "Δr_imdb")):
        if metric not in summary:
            continue
        for method, runs in summary[summary["sparsity"] > 0].groupby("method", sort=True):
            first = runs.loc[runs.groupby("run")["step"].idxmin(), ["run", metric]]
            last = runs.loc[runs.groupby("run")["step"].idxmax(), ["run", metric]]
            m = first.merge(last, on="run", suffixes=("_0", "_1")).dropna()
            d = mean_ci(m[f"{metric}_1"] - m[f"{metric}_0"])
            peak = runs.loc[runs.groupby("run")[metric].idxmax()]
            where = (peak["step"] / runs.groupby("run")["step"].max().reindex(peak["run"]).to_numpy())
            rows.append(_row(f"{name} rises over training", f"{method}, all sparse runs",
                             f"mean change {d['mean']:+.3f}; peak at {100 * where.median():.0f} % of "
                             f"training (median)", d["ci_low"], d["ci_high"], d["n"], scale=1.0, unit=""))
    # 5. metric-accuracy rank correlation across sparse runs (final snapshots)
    for metric, name in (("lambda_imsg", "λ_imsg"), ("delta_r_imdb", "Δr_imdb")):
        if metric in sparse:
            r = spearman_ci(sparse[metric], sparse["test_acc"])
            rows.append(_row(f"ρ({name}, accuracy) > 0", "final snapshots, sparse runs",
                             f"Spearman ρ = {r['rho']:+.2f}", r["ci_low"], r["ci_high"], r["n"],
                             scale=1.0, unit=""))
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--out", type=Path, help="analysis folder (default RUNS/sift-analysis)")
    p.add_argument("--run", action="store_true", help="train the default sweep and analyse it first")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)
    out = args.out or args.runs / "sift-analysis"
    if args.run:
        for cmd in (["-m", "sift_train", "sweep", "--preset", "default", "--out", str(args.runs)],
                    ["-m", "sift_graph", "analyze", str(args.runs), "--out", str(out)]):
            subprocess.run([sys.executable, *cmd], check=True)
    file = out / "summary.csv"
    if not file.is_file():
        print(f"{file}: not found; run python -m sift_graph analyze {args.runs} first (or pass --run)",
              file=sys.stderr)
        return 2
    table = claims(pd.read_csv(file))
    if args.markdown:
        print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    else:
        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            print(table.to_string(index=False))
    counts = table["verdict"].value_counts()
    print("\n" + ", ".join(f"{v}: {counts.get(v, 0)}" for v in (SUPPORTED, NOT, INCONCLUSIVE)))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
