"""The Dask route and the GPU route of analyze give the tables of the local CPU route."""
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from runfolder import write_run

from sift_graph import load_run
from sift_graph.__main__ import main
from sift_graph.analysis.compute import compute_snapshot
from sift_graph.pipeline import run_analysis


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path / "runs", "wide-rigl", family="wide", method="rigl", seed=1)
    write_run(tmp_path / "runs", "parallel-set", family="parallel", method="set", seed=2)
    return tmp_path / "runs"


def test_dask_tables_equal_the_local_tables(runs, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = run_analysis([runs], out=tmp_path / "local", jobs=1, figures=False, progress=False)
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = run_analysis([runs], out=tmp_path / "dask", client=client, figures=False, progress=False)
        again = run_analysis([runs], out=tmp_path / "dask", client=client, figures=False, progress=False)
    assert (remote.computed, again.computed, again.cached) == (6, 0, 6)  # the same cache
    pd.testing.assert_frame_equal(local.layers, remote.layers)
    pd.testing.assert_frame_equal(local.summary, remote.summary.assign(run_path=local.summary["run_path"]))
    assert sorted(p.name for p in (tmp_path / "local" / "cache").iterdir()) == \
        sorted(p.name for p in (tmp_path / "dask" / "cache").iterdir())


def test_snapshot_task_travels_to_another_process(runs):
    """What a Dask worker receives and returns survives pickling (processes=True clusters)."""
    snapshot = load_run(runs / "wide-rigl").snapshots[0]
    task = pickle.loads(pickle.dumps((compute_snapshot, snapshot)))
    result = pickle.loads(pickle.dumps(task[0](task[1], "hoang2023a")))
    assert result.rows == compute_snapshot(snapshot, "hoang2023a").rows and len(result.sha256) == 64


def test_jobs_and_a_cluster_exclude_each_other(runs, tmp_path):
    with pytest.raises(ValueError, match="Dask cluster sets its own workers"):
        run_analysis([runs], out=tmp_path / "o", jobs=2, client=object(), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_route_gives_the_cpu_tables(runs, tmp_path):
    cpu = run_analysis([runs], out=tmp_path / "cpu", jobs=1, figures=False, progress=False).layers
    gpu = run_analysis([runs], out=tmp_path / "gpu", device="cuda", figures=False, progress=False).layers
    scale = np.maximum(1.0, cpu[["sigma1", "lambda_sigma1"]].abs().max(axis=1).fillna(1.0))
    for column in cpu.select_dtypes("number").columns:
        close = (gpu[column] - cpu[column]).abs() <= 1e-9 * scale
        assert (close | (gpu[column].isna() & cpu[column].isna())).all(), column
    assert gpu["reason"].equals(cpu["reason"])


def test_scheduler_address_without_dask_installed_is_one_line_exit_2(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # as if not installed
    code = main(["analyze", str(runs), "--out", str(tmp_path / "o"), "--dask-scheduler", "tcp://h:8786"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: the Dask route needs dask.distributed: pip install 'sift[dask]'"
    assert not (tmp_path / "o").exists()


def test_cli_scheduler_address_gives_the_local_tables(runs, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        code = main(["analyze", str(runs), "--out", str(tmp_path / "dask"), "--dask-scheduler",
                     cluster.scheduler_address, "--no-figures", "--quiet"])
    assert code == 0 and "6 snapshots (6 computed, 0 cached)" in capsys.readouterr().out
    local = run_analysis([runs], out=tmp_path / "local", jobs=1, figures=False, progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask" / "layers.csv"),
                                  pd.read_csv(tmp_path / "local" / "layers.csv"))
