"""Seed statistics (groups.csv, comparisons.csv) against scipy.stats on hand-made numbers."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sift_graph.stats import comparison_table, group_table, mean_ci, paired_difference


def test_mean_ci_is_the_t_interval_of_scipy():
    x = [0.61, 0.64, 0.58, 0.66, 0.60]
    got = mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert got["n"] == 5 and got["mean"] == pytest.approx(0.618)
    assert got["std"] == pytest.approx(np.std(x, ddof=1))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
    lo90, hi90 = stats.t.interval(0.90, 4, loc=np.mean(x), scale=stats.sem(x))
    assert (mean_ci(x, 0.90)["ci_low"], mean_ci(x, 0.90)["ci_high"]) == pytest.approx((lo90, hi90))


def test_mean_ci_of_one_value_has_no_interval_and_nans_are_dropped():
    one = mean_ci([0.5, float("nan")])
    assert one["n"] == 1 and one["mean"] == 0.5 and math.isnan(one["ci_low"]) and math.isnan(one["std"])
    assert mean_ci([])["n"] == 0


def test_paired_difference_matches_scipy_ttest_rel():
    a = np.array([0.63, 0.65, 0.62, 0.70])
    b = np.array([0.52, 0.55, 0.54, 0.58])
    got = paired_difference(a, b)
    res = stats.ttest_rel(a, b)
    d = a - b
    lo, hi = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert got["p_value"] == pytest.approx(res.pvalue, rel=1e-10)
    assert (got["mean"], got["ci_low"], got["ci_high"]) == pytest.approx((d.mean(), lo, hi), rel=1e-12)


def _summary():
    rows = []
    acc = {("dense", 0.0, "static"): [0.68, 0.70, 0.69],
           ("wide", 0.9, "static"): [0.52, 0.54, 0.50],
           ("wide", 0.9, "rigl"): [0.63, 0.64, 0.61]}
    for (family, s, method), values in acc.items():
        for seed, v in enumerate(values):
            run = f"{family}-{s}-{method}-{seed}"
            rows.append({"run": run, "step": 0, "test_acc": 0.1, "delta_r_imdb": 9.0, "family": family,
                         "sparsity": s, "method": method, "seed": seed})  # early snapshot: ignored
            rows.append({"run": run, "step": 100, "test_acc": v, "delta_r_imdb": 1.0 + v, "family": family,
                         "sparsity": s, "method": method, "seed": seed})
    return pd.DataFrame(rows), acc


def test_group_table_uses_each_runs_final_snapshot():
    summary, acc = _summary()
    g = group_table(summary).set_index(["family", "sparsity", "method"])
    row = g.loc[("wide", 0.9, "rigl")]
    x = acc[("wide", 0.9, "rigl")]
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert row["test_acc_n"] == 3 and row["seeds"] == "0 1 2"
    assert (row["test_acc_mean"], row["test_acc_ci_low"], row["test_acc_ci_high"]) == pytest.approx((np.mean(x), lo, hi))
    assert row["delta_r_imdb_mean"] == pytest.approx(1.0 + np.mean(x))


def test_comparisons_are_paired_by_seed():
    summary, acc = _summary()
    summary = summary.drop(summary[(summary["run"] == "wide-0.9-static-2")].index)  # seed 2 unpaired
    c = comparison_table(summary).set_index("comparison")
    rigl = c.loc["rigl - static"]
    a, b = np.array(acc[("wide", 0.9, "rigl")][:2]), np.array(acc[("wide", 0.9, "static")][:2])
    assert rigl["n"] == 2 and rigl["seeds"] == "0 1"
    assert rigl["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert rigl["diff_mean"] == pytest.approx(np.mean(a - b))
    wide = c.loc["wide - dense"]
    assert len(wide) == 2  # static and rigl, each against the dense runs of the same seeds
    r = wide[wide["method"] == "rigl"].iloc[0]
    d = np.array(acc[("wide", 0.9, "rigl")]) - np.array(acc[("dense", 0.0, "static")])
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert (r["diff_mean"], r["ci_low"], r["ci_high"]) == pytest.approx((d.mean(), lo, hi))
    assert bool(r["resolved"]) == (hi < 0 or lo > 0)


def test_spearman_ci_rho_matches_scipy_and_the_interval_brackets_it():
    from sift_graph.stats import spearman_ci

    rng = np.random.default_rng(0)
    x = rng.random(30)
    y = x + 0.3 * rng.random(30)
    got = spearman_ci(x, y, n_boot=500)
    assert got["rho"] == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12) and got["n"] == 30
    assert got["ci_low"] <= got["rho"] <= got["ci_high"] and got["ci_low"] > 0
    # the bootstrap of a single resample equals scipy's ρ on that resample
    idx = np.random.default_rng(5).integers(0, 30, 30)
    one = spearman_ci(x[idx], y[idx], n_boot=10)
    assert one["rho"] == pytest.approx(stats.spearmanr(x[idx], y[idx]).statistic)
    assert math.isnan(spearman_ci([1, 2], [3, 4])["rho"])
