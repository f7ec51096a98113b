"""Seed figures: error bars are the groups' t intervals; metric-vs-accuracy quotes scipy's Spearman ρ."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sift_graph import plots
from sift_graph.stats import final_rows, group_table

sys.path.insert(0, str(Path(__file__).parent))
from test_paper_claims import _summary  # noqa: E402


def _with_reasons():
    s, acc = _summary()
    s["snapshot_reason"] = np.select([s.step == 0, s.step == 100], ["init", "final"], "mask_update")
    s["n_layers"], s["n_valid_lambda_imsg"] = 2, np.where(s.seed == 1, 1, 2)
    return s, acc


def test_error_bars_are_the_t_intervals_of_each_group():
    s, acc = _with_reasons()
    fig = plots.accuracy_bars(group_table(s))
    ax = fig.axes[0]
    bars = {c.get_label(): c for c in ax.containers}
    x = np.array(acc[("wide", 0.9, "rigl")]) * 100
    lo, hi = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    segs = bars["wide / rigl"].lines[2][0].get_segments()
    assert segs[0][:, 1] == pytest.approx([lo, hi])


def test_metric_vs_accuracy_title_has_scipy_spearman_and_layer_coverage():
    s, _ = _with_reasons()
    final = final_rows(s)
    fig = plots.metric_vs_accuracy(final, "lambda_imsg")
    sparse = final[final["sparsity"] > 0]
    rho = stats.spearmanr(sparse["lambda_imsg"], sparse["test_acc"]).statistic
    title = fig.axes[0].get_title()
    assert f"ρ = {rho:+.2f}" in title and f"n = {len(sparse)}" in title
    assert any(t.get_text() == "1/2" for t in fig.axes[0].texts)  # seed 1: mean over 1 of 2 layers


def test_snapshot_selection_and_run_paths():
    s, _ = _with_reasons()
    assert set(plots.select_snapshots(s, "epochs")["step"]) == {0, 100}
    assert len(plots.select_snapshots(s, "final")) == s["run"].nunique()
    with pytest.raises(ValueError, match="unknown snapshot selection"):
        plots.select_snapshots(s, "some")
    fig = plots.pareto_heatmap(s)
    paths = [l for l in fig.axes[0].lines if l.get_linewidth() == 0.6]
    assert len(paths) == s["run"].nunique()
    run = s[s["run"] == s["run"].iloc[0]].sort_values("step")
    ours = [p for p in paths if list(p.get_xdata()) == list(run["delta_r_imdb"])]
    assert ours and list(ours[0].get_ydata()) == list(run["lambda_imsg"])  # training order
