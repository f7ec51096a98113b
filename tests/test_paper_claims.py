"""analysis/paper_claims.py: verdicts from hand-made final accuracies (paired t intervals by scipy)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
sys.path.insert(0, str(ANALYSIS))
import paper_claims  # noqa: E402


def _summary():
    acc = {("dense", 0.0, "static"): [0.68, 0.70, 0.69],
           ("wide", 0.9, "static"): [0.52, 0.54, 0.50],
           ("wide", 0.9, "rigl"): [0.63, 0.64, 0.61],
           ("doped", 0.9, "static"): [0.66, 0.70, 0.67],
           ("doped", 0.9, "rigl"): [0.70, 0.71, 0.69]}
    rows = []
    for (family, s, method), values in acc.items():
        for seed, v in enumerate(values):
            run = f"{family}-{s}-{method}-{seed}"
            for step, frac in ((0, 0.2), (50, 0.6), (100, 1.0)):
                rows.append({"run": run, "step": step, "test_acc": v * frac, "family": family,
                             "sparsity": s, "method": method, "seed": seed,
                             "lambda_imsg": v * frac + 0.01 * seed, "delta_r_imdb": 1.0 - frac})
    return pd.DataFrame(rows), acc


def test_claim_verdicts_follow_the_paired_intervals():
    summary, acc = _summary()
    t = paper_claims.claims(summary).set_index(["claim", "scope"])
    wide = t.loc[("rigl > static", "s=0.9, wide")]
    d = np.subtract(acc[("wide", 0.9, "rigl")], acc[("wide", 0.9, "static")])
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert wide["verdict"] == ("supported" if lo > 0 else "inconclusive")
    assert wide["95% CI"] == f"[{100 * lo:+.2f}, {100 * hi:+.2f}] pp"
    assert t.loc[("rigl > static", "s=0.9, doped")]["verdict"] == "inconclusive"
    assert t.loc[("wide > dense", "s=0.9, rigl")]["verdict"] == "not supported"  # 62.7 vs 69.0 %
    assert t.loc[("wide is the best family", "s=0.9, rigl")]["verdict"] == "not supported"
    assert t.loc[("λ_imsg rises over training", "rigl, all sparse runs")]["verdict"] == "supported"
    assert t.loc[("Δr_imdb rises over training", "rigl, all sparse runs")]["verdict"] == "not supported"


def test_verdict_rule():
    assert paper_claims.verdict(0.1, 0.2) == "supported"
    assert paper_claims.verdict(-0.2, -0.1) == "not supported"
    assert paper_claims.verdict(-0.1, 0.2) == "inconclusive"
    assert paper_claims.verdict(float("nan"), float("nan")) == "inconclusive"


def test_cli_reads_the_analysis_folder(tmp_path):
    summary, _ = _summary()
    (tmp_path / "sift-analysis").mkdir()
    summary.to_csv(tmp_path / "sift-analysis" / "summary.csv", index=False)
    proc = subprocess.run([sys.executable, str(ANALYSIS / "paper_claims.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "rigl > static" in proc.stdout and "supported:" in proc.stdout
    missing = subprocess.run([sys.executable, str(ANALYSIS / "paper_claims.py"), str(tmp_path / "x")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "not found" in missing.stderr
