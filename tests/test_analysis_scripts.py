"""The figure scripts in analysis/ write their files from a runs folder (built in the test)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runfolder import write_run

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"


def _run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ANALYSIS / script), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})


def _runs(root: Path) -> Path:
    for i, (family, method) in enumerate([("wide", "rigl"), ("parallel", "set")]):
        write_run(root, f"{family}-{method}", family=family, method=method, seed=i,
                  steps=(0, 10, 20, 30), accs=[0.2, 0.5, 0.7, 0.9])
    return root


@pytest.mark.slow
def test_figure3_writes_one_heatmap_per_family_and_pair(tmp_path):
    runs = _runs(tmp_path / "runs")
    proc = _run("figure3.py", runs, "--family", "wide", "parallel", "--sparsity", "0.5", "--snapshots", "all")
    assert proc.returncode == 0, proc.stderr
    for name in ("figure3_wide_imdb-imsg.png", "figure3_wide_full.png", "figure3_parallel_full.png"):
        assert (runs / "sift-analysis" / name).stat().st_size > 5000


@pytest.mark.slow
def test_figure6_writes_trajectories_and_rejects_empty_filter(tmp_path):
    runs = _runs(tmp_path / "runs")
    proc = _run("figure6.py", runs, "--out", tmp_path / "out", "--format", "svg")
    assert proc.returncode == 0, proc.stderr
    assert b"<svg" in (tmp_path / "out" / "figure6.svg").read_bytes()[:500]
    proc = _run("figure6.py", runs, "--family", "doped")
    assert proc.returncode == 1 and "no snapshots left" in proc.stderr
