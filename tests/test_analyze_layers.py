"""``analyze --layers all|sparse``: dense layers as complete bipartite graphs (docs/analyze.md § Layers)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sift_graph import analyze, layer_metrics, load_run, run_analysis
from sift_graph.analysis.options import UsageError
from sift_graph.runs import RunFormatError

from runfolder import write_snapshot

SPARSE = "body.weight"
DENSE = "head.weight"
DENSE_SHAPE = (3, 5)  # K_{5,3}: 5 inputs, 3 outputs


def _tiny_run(root, *, dense_in_config=True, dense_weight=None):
    """One snapshot: a 6x8 sparse Linear (every input and output kept) and a dense 3x5 Linear."""
    run = root / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    mask = np.zeros((6, 8), bool)
    mask[np.arange(8) % 6, np.arange(8)] = True
    mask[:, :4] |= rng.random((6, 4)) < 0.5
    weight = np.where(mask, rng.uniform(0.5, 1.5, mask.shape), 0).astype(np.float32)
    dense = rng.standard_normal(DENSE_SHAPE).astype(np.float32) if dense_weight is None else dense_weight
    meta = {"format": "sift-run", "format_version": 1,
            "config": {"model": "mlp", "family": "dense", "method": "static", "sparsity": 0.5, "seed": 0},
            "sparse_tensors": {SPARSE: {"shape": [6, 8]}}}
    if dense_in_config:
        meta["dense_tensors"] = {DENSE: {"shape": list(DENSE_SHAPE)}}
    (run / "config.json").write_text(json.dumps(meta))
    write_snapshot(run, 0, {SPARSE: (mask, weight)}, test_acc=0.5, dense={DENSE: dense})
    return run, (mask, weight), dense


def _rows(layers_df, name):
    return layers_df[layers_df["layer"] == name]


@pytest.mark.parametrize("convention", ["hoang2023a", "hoang2023b"])
def test_all_mode_dense_layer_is_complete_bipartite(tmp_path, convention):
    run, (mask, weight), dense = _tiny_run(tmp_path)
    layers_df, summary = analyze([run], out=tmp_path / "out", layers="all", convention=convention,
                                 figures=False, jobs=1, progress=False)
    assert list(layers_df["layer"]) == [SPARSE, DENSE]
    assert list(layers_df["kind"]) == ["sparse", "dense"]
    row = _rows(layers_df, DENSE).iloc[0]
    expected = layer_metrics(np.ones(DENSE_SHAPE, bool), dense, convention=convention)
    for key, value in expected.items():
        if isinstance(value, str):
            assert (row[key] if isinstance(row[key], str) else "") == value, key
        else:
            assert row[key] == pytest.approx(value, nan_ok=True), key
    out_f, in_f = DENSE_SHAPE  # closed form of K_{a,b}: sigma1 = sqrt(a*b), sigma2 = 0, full degrees
    assert row["sigma1"] == pytest.approx(np.sqrt(out_f * in_f))
    assert row["sigma2"] == pytest.approx(0.0, abs=1e-9)
    assert row["n_edges"] == out_f * in_f and row["density"] == 1.0
    assert {row["d_left"], row["d_right"]} == {float(out_f), float(in_f)}
    # summary means follow the mode: over both layers
    assert summary["n_layers"].iloc[0] == 2 and summary["layers"].iloc[0] == "all"
    sparse_sigma = layer_metrics(mask, weight, convention=convention)["sigma1"]
    assert summary["sigma1"].iloc[0] == pytest.approx((sparse_sigma + np.sqrt(out_f * in_f)) / 2)


def test_constant_dense_weight_closed_form(tmp_path):
    """|W| = c on K_{a,b}: the weighted top singular value is c*sqrt(a*b) (rank-one c*1*1^T)."""
    run, _, _ = _tiny_run(tmp_path, dense_weight=np.full(DENSE_SHAPE, -2.0, np.float32))
    layers_df, _ = analyze([run], out=tmp_path / "out", layers="all", figures=False, jobs=1, progress=False)
    row = _rows(layers_df, DENSE).iloc[0]
    assert row["lambda_sigma1"] == pytest.approx(2.0 * np.sqrt(15.0))
    assert row["lambda_sigma2"] == pytest.approx(0.0, abs=1e-6)


def test_sparse_mode_has_no_dense_rows_and_each_mode_has_its_own_cache_entry(tmp_path):
    run, (mask, weight), _ = _tiny_run(tmp_path)
    out = tmp_path / "out"
    sparse_df, summary = analyze([run], out=out, figures=False, jobs=1, progress=False)
    assert list(sparse_df["layer"]) == [SPARSE] and set(sparse_df["kind"]) == {"sparse"}
    assert summary["n_layers"].iloc[0] == 1 and summary["layers"].iloc[0] == "sparse"
    assert summary["sigma1"].iloc[0] == pytest.approx(layer_metrics(mask, weight)["sigma1"])
    all_df, _ = analyze([run], out=out, layers="all", figures=False, jobs=1, progress=False)
    assert list(all_df["layer"]) == [SPARSE, DENSE]  # not the sparse mode's cached rows
    again, _ = analyze([run], out=out, figures=False, jobs=1, progress=False)
    assert list(again["layer"]) == [SPARSE]  # nor the other way round
    entries = sorted(p.name.split(".")[2] for p in (out / "cache").glob("*.json") if p.name != "index.json")
    assert entries == ["all", "sparse"]


def _count_layer_rows(monkeypatch) -> list[str]:
    """Names of the layers whose metrics are computed from now on (the in-process route)."""
    from sift_graph.analysis import compute

    names: list[str] = []
    real = compute.layer_row

    def counting(name, *args, **kwargs):
        names.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(compute, "layer_row", counting)
    return names


def test_all_after_sparse_computes_only_the_dense_weights(tmp_path, monkeypatch):
    run, _, _ = _tiny_run(tmp_path)
    fresh, fresh_summary = analyze([run], out=tmp_path / "fresh", layers="all", figures=False, jobs=1, progress=False)
    out = tmp_path / "out"
    analyze([run], out=out, figures=False, jobs=1, progress=False)  # sparse first
    computed = _count_layer_rows(monkeypatch)
    result = run_analysis([run], out=out, layers="all", figures=False, jobs=1, progress=False)
    assert computed == [DENSE]  # the sparse rows come from the sparse entry
    assert result.computed == 1 and result.cached == 0
    pd.testing.assert_frame_equal(result.layers, fresh)
    pd.testing.assert_frame_equal(result.summary, fresh_summary)
    computed.clear()
    again = run_analysis([run], out=out, layers="all", figures=False, jobs=1, progress=False)
    assert computed == [] and again.cached == 1  # now an `all` entry of its own


def test_sparse_after_all_takes_the_sparse_rows_of_the_all_entry(tmp_path, monkeypatch):
    from sift_graph.analysis import cache

    monkeypatch.setattr(cache, "RACY_NS", 0)  # index the snapshot written a moment ago
    run, _, _ = _tiny_run(tmp_path)
    fresh, fresh_summary = analyze([run], out=tmp_path / "fresh", figures=False, jobs=1, progress=False)
    out = tmp_path / "out"
    analyze([run], out=out, layers="all", figures=False, jobs=1, progress=False)
    computed = _count_layer_rows(monkeypatch)
    from sift_graph.analysis import compute

    read = []
    real = compute.compute_snapshot
    monkeypatch.setattr(compute, "compute_snapshot", lambda snapshot, *a, **k: read.append(1) or real(snapshot, *a, **k))
    result = run_analysis([run], out=out, figures=False, jobs=1, progress=False)
    assert read == [] and computed == [] and result.computed == 0 and result.cached == 1  # not even read
    pd.testing.assert_frame_equal(result.layers, fresh)
    pd.testing.assert_frame_equal(result.summary, fresh_summary)
    (out / "cache" / "index.json").unlink()  # unknown signature: read and hashed by the compute stage
    result = run_analysis([run], out=out, figures=False, jobs=1, progress=False)
    assert read == [1] and computed == [] and result.cached == 1
    pd.testing.assert_frame_equal(result.layers, fresh)


def test_snapshot_reader_dense_tensors(tmp_path):
    run, _, dense = _tiny_run(tmp_path)
    snap = load_run(run).snapshots[0]
    assert snap.dense_tensors == (DENSE,)
    assert [n for n, _, _ in snap.iter_tensors()] == [SPARSE]
    got = {n: (m, w) for n, m, w in snap.iter_tensors(dense=True)}
    assert got[DENSE][0].all() and got[DENSE][0].shape == DENSE_SHAPE
    np.testing.assert_array_equal(got[DENSE][1], dense)


def test_dense_tensors_count_in_the_size_budget(tmp_path):
    """config.json's dense_tensors shapes raise the budget; without them the dense values exceed it."""
    big = np.ones((300, 400), np.float32)  # 480 kB of values, 1.1 MB counted decoded
    run, _, _ = _tiny_run(tmp_path, dense_weight=big)
    meta = json.loads((run / "config.json").read_text())
    meta["dense_tensors"] = {DENSE: {"shape": [300, 400]}}
    (run / "config.json").write_text(json.dumps(meta))
    assert load_run(run).snapshots[0].dense_tensors == (DENSE,)
    del meta["dense_tensors"]
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(RunFormatError, match="dense_tensors shapes"):
        load_run(run)


def test_bad_dense_values_are_refused(tmp_path):
    run, _, _ = _tiny_run(tmp_path)
    path = run / "snapshots" / "step_00000000.npz"
    with np.load(path) as z:
        arrays = dict(z)
    arrays[f"{DENSE}/values"] = arrays[f"{DENSE}/values"][:-1]
    np.savez(path, **arrays)
    snap = load_run(run).snapshots[0]
    assert list(snap.load()) == [SPARSE]  # sparse mode does not decode the dense weight
    with pytest.raises(RunFormatError, match=f"{DENSE}: 14 values for 15 entries"):
        list(snap.iter_tensors(dense=True))


def test_old_snapshots_have_no_dense_tensors(tmp_path):
    from runfolder import write_run

    run = write_run(tmp_path, "old", steps=(0,))
    assert load_run(run).snapshots[0].dense_tensors == ()
    all_df, _ = analyze([run], out=tmp_path / "out", layers="all", figures=False, jobs=1, progress=False)
    assert set(all_df["kind"]) == {"sparse"}


def test_bad_layers_value(tmp_path):
    run, _, _ = _tiny_run(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="layers choice 'dense'"):
        analyze([run], out=out, layers="dense", figures=False)
    assert not out.exists()
    cli = subprocess.run([sys.executable, "-m", "sift_graph", "analyze", str(run), "--out", str(out),
                          "--layers", "dense"], capture_output=True, text=True)
    assert cli.returncode == 2 and "--layers" in cli.stderr
    assert not out.exists()


def test_cli_layers_all(tmp_path):
    run, _, _ = _tiny_run(tmp_path)
    out = tmp_path / "out"
    cli = subprocess.run([sys.executable, "-m", "sift_graph", "analyze", str(run), "--out", str(out),
                          "--layers", "all", "--no-figures", "--quiet", "--jobs", "1"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    table = pd.read_csv(out / "layers.csv")
    assert list(zip(table["layer"], table["kind"])) == [(SPARSE, "sparse"), (DENSE, "dense")]


@pytest.mark.slow
def test_every_route_passes_the_layers_choice(tmp_path):
    """Local worker processes and the Dask route give the in-process ``all`` rows (dense included)."""
    distributed = pytest.importorskip("distributed")
    run, _, _ = _tiny_run(tmp_path)
    write_snapshot(run, 1, load_run(run).snapshots[0].load(), dense={DENSE: np.ones(DENSE_SHAPE, np.float32)})
    one, _ = analyze([run], out=tmp_path / "one", layers="all", figures=False, jobs=1, progress=False)
    two, _ = analyze([run], out=tmp_path / "two", layers="all", figures=False, jobs=2, progress=False)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dask, _ = analyze([run], out=tmp_path / "dask", layers="all", figures=False, client=client,
                          progress=False)
    assert list(one["kind"]) == ["sparse", "dense"] * 2
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(one, dask)
