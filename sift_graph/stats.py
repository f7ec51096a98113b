"""Seed statistics of a sweep: ``groups.csv`` and ``comparisons.csv`` (``docs/analyze.md``).

* :func:`group_table`: per (family, sparsity, method) the mean, sample standard deviation, n and the
  two-sided t-distribution confidence interval of the final test accuracy and of every final layer-mean
  metric (the last snapshot of each run).
* :func:`comparison_table`: paired differences on the same seed, with the paired t interval and
  p-value: each dynamic method (RigL, SET) minus static at the same family and sparsity, and each
  family (at each sparsity and method) minus the dense baseline (``sparsity = 0``).

Pure functions of DataFrames; the CIs are ``mean ± t_{(1+level)/2, n-1} · s / √n``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from .files import atomic_write_text

GROUP_KEYS = ("family", "sparsity", "method")
_NOT_METRICS = {"step", "epoch", "seed", "sparsity", "epochs", "batch_size", "lr", "momentum",
                "weight_decay", "lr_gamma", "update_interval", "drop_fraction", "end_fraction",
                "snapshot_every", "snapshot_log", "eval_batch_size", "n_layers"}


def mean_ci(values, level: float = 0.95) -> dict[str, float]:
    """``{mean, std, n, ci_low, ci_high}`` of the finite ``values`` (std with ``ddof=1``; NaN spread
    and interval when ``n < 2``)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "std": math.nan, "n": 1, "ci_low": math.nan, "ci_high": math.nan}
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def paired_difference(a, b, level: float = 0.95) -> dict[str, float]:
    """:func:`mean_ci` of ``a - b`` (paired entries; pairs with a NaN dropped) plus ``p_value``, the
    two-sided paired t-test (NaN when ``n < 2`` or all differences are equal)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    out = mean_ci(d, level)
    p = math.nan
    if len(d) >= 2 and out["std"] > 0:
        t = out["mean"] / (out["std"] / math.sqrt(len(d)))
        p = float(2 * sps.t.sf(abs(t), len(d) - 1))
    return {**out, "p_value": p}


def final_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The last snapshot (largest step) of every run."""
    if summary.empty:
        return summary
    idx = summary.groupby("run", sort=True)["step"].idxmax()
    return summary.loc[idx].reset_index(drop=True)


def metric_columns(summary: pd.DataFrame) -> list[str]:
    """``test_acc`` and the numeric layer-mean metric columns of ``summary``."""
    cols = [c for c in summary.columns if c not in _NOT_METRICS and c != "test_acc"
            and pd.api.types.is_float_dtype(summary[c])]
    return ["test_acc", *cols] if "test_acc" in summary else cols


def group_table(summary: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per (family, sparsity, method) of the final snapshots: ``n_runs``, ``seeds`` and, per
    metric ``m``, ``m_mean``, ``m_std``, ``m_n``, ``m_ci_low``, ``m_ci_high``."""
    final = final_rows(summary)
    keys = [k for k in GROUP_KEYS if k in final]
    if final.empty or not keys:
        return pd.DataFrame()
    metrics = metric_columns(final)
    rows = []
    for values, sub in final.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        row = dict(zip(keys, values))
        row["n_runs"] = len(sub)
        if "seed" in sub:
            row["seeds"] = " ".join(str(s) for s in sorted(sub["seed"].dropna().unique()))
        for m in metrics:
            row.update({f"{m}_{k}": v for k, v in mean_ci(sub[m], level).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _by_seed(frame: pd.DataFrame, metric: str) -> pd.Series:
    return frame.drop_duplicates("seed", keep="last").set_index("seed")[metric]


def comparison_table(summary: pd.DataFrame, metric: str = "test_acc", level: float = 0.95) -> pd.DataFrame:
    """Paired (same seed) differences of ``metric`` at the final snapshots: ``<method> - static`` per
    (family, sparsity) for every dynamic method, and ``<family> - dense`` per (family, sparsity, method)
    against the dense baseline runs (sparsity 0). ``resolved``: the CI excludes 0."""
    final = final_rows(summary)
    need = {"family", "sparsity", "method", "seed", metric}
    if final.empty or not need <= set(final.columns):
        return pd.DataFrame()
    sparse = final[final["sparsity"] > 0]
    dense = final[(final["sparsity"] == 0)]
    rows = []

    def add(kind, family, sparsity, method, baseline, a, b):
        a, b = _by_seed(a, metric), _by_seed(b, metric)
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            return
        d = paired_difference(a[seeds].to_numpy(), b[seeds].to_numpy(), level)
        rows.append({"comparison": kind, "family": family, "sparsity": sparsity, "method": method,
                     "baseline": baseline, "metric": metric, "seeds": " ".join(map(str, seeds)),
                     "a_mean": float(a[seeds].mean()), "b_mean": float(b[seeds].mean()),
                     **{f"diff_{k}" if k in ("mean", "std") else k: v for k, v in d.items()},
                     "resolved": bool(d["ci_low"] > 0 or d["ci_high"] < 0)})

    for (family, s), sub in sparse.groupby(["family", "sparsity"], sort=True):
        static = sub[sub["method"] == "static"]
        for method in sorted(set(sub["method"]) - {"static"}):
            add(f"{method} - static", family, s, method, "static", sub[sub["method"] == method], static)
    if not dense.empty:
        for (family, s, method), sub in sparse.groupby(["family", "sparsity", "method"], sort=True):
            add(f"{family} - dense", family, s, method, "dense", sub, dense)
    return pd.DataFrame(rows)


def write_statistics(summary: pd.DataFrame, out: str | Path, level: float = 0.95) -> dict[str, Path]:
    """Write ``groups.csv`` and ``comparisons.csv`` into ``out``; returns their paths."""
    out = Path(out)
    paths = {"groups": out / "groups.csv", "comparisons": out / "comparisons.csv"}
    atomic_write_text(paths["groups"], group_table(summary, level).to_csv(index=False))
    atomic_write_text(paths["comparisons"], comparison_table(summary, level=level).to_csv(index=False))
    return paths


def spearman_ci(x, y, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Spearman ρ of the finite pairs ``(x, y)`` and its percentile bootstrap CI (pairs resampled
    ``n_boot`` times with a fixed ``seed``; resamples with a constant side are dropped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": math.nan, "n": n, "ci_low": math.nan, "ci_high": math.nan}
    rho = float(sps.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    rx = np.apply_along_axis(sps.rankdata, 1, x[idx])
    ry = np.apply_along_axis(sps.rankdata, 1, y[idx])
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    keep = den > 0
    boots = (rx * ry).sum(axis=1)[keep] / den[keep]
    lo, hi = np.quantile(boots, [0.5 - level / 2, 0.5 + level / 2])
    return {"rho": rho, "n": n, "ci_low": float(lo), "ci_high": float(hi)}
