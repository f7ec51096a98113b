"""Snapshot schedule and consistency: snapshots just before mask updates, mask history, dense layers."""
import json

import numpy as np
import pytest

import sift_graph
from sift_train.config import make_config
from sift_train.schedule import UpdateSchedule
from sift_train.snapshots import log_steps, scheduled_steps
from sift_train.train import train


def _rigl(**kw):
    base = dict(dataset="synthetic", model="cnn", family="wide", sparsity=0.75, method="rigl", epochs=3,
                batch_size=64, update_interval=2, drop_fraction=0.5, anneal="constant", end_fraction=1.0)
    return make_config("digits", **{**base, **kw})


def test_no_snapshot_has_zero_weights_inside_its_mask_and_every_update_mask_is_kept(tmp_path):
    cfg = _rigl()
    train(cfg, tmp_path / "r", progress=False)
    run = sift_graph.load_run(tmp_path / "r")
    updates = UpdateSchedule.for_training(4 * 3, 1.0, interval=2).update_steps()  # 4 steps per epoch
    assert updates == [2, 4, 6, 8, 10]
    assert {s.step for s in run.snapshots if s.reason == "mask_update"} == set(updates)
    history = sorted((tmp_path / "r" / "masks").glob("step_*.npz"))
    assert [int(p.stem[5:]) for p in history] == updates
    previous = {n: m for n, (m, _) in run.snapshots[0].load().items()}  # init masks
    for snap in run.snapshots:
        layers = snap.load()
        for name, (mask, weight) in layers.items():
            # a grown weight is exactly 0 right after an update; before it, every kept weight was trained
            assert np.count_nonzero(weight[mask] == 0) == 0, (snap.step, snap.reason, name)
        if snap.reason == "mask_update":  # the mask it was trained on: the previous update's choice
            for name, (mask, _) in layers.items():
                np.testing.assert_array_equal(mask, previous[name])
            with np.load(tmp_path / "r" / "masks" / f"step_{snap.step:08d}.npz", allow_pickle=False) as z:
                shapes = {n: tuple(z[f"{n}/shape"]) for n in layers}
                previous = {n: np.unpackbits(z[f"{n}/mask"], count=int(np.prod(shapes[n])),
                                             bitorder="big").astype(bool).reshape(shapes[n]) for n in layers}
            changed = any(not np.array_equal(previous[n], layers[n][0]) for n in layers)
            assert changed  # the update did move the mask (drop fraction 0.5)


def test_snapshots_store_the_dense_layers_too(tmp_path):
    train(_rigl(epochs=1), tmp_path / "r", progress=False)
    snap = sorted((tmp_path / "r" / "snapshots").glob("*.npz"))[-1]
    with np.load(snap, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["dense_tensors"] == ["stem.conv.weight", "fc.weight"]
        shape = tuple(z["fc.weight/shape"])
        assert shape[0] == 10 and z["fc.weight/values"].size == np.prod(shape)
        fc = z["fc.weight/values"].reshape(shape)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert {n: tuple(e["shape"]) for n, e in config["dense_tensors"].items()}["fc.weight"] == shape
    last = sift_graph.load_run(tmp_path / "r").snapshots[-1]  # dense weights within the size budget
    dense = {n: (m, w) for n, m, w in last.iter_tensors(dense=True) if n in last.dense_tensors}
    assert list(dense) == ["stem.conv.weight", "fc.weight"] and dense["fc.weight"][0].all()
    np.testing.assert_array_equal(dense["fc.weight"][1], fc)


def test_schedule_every_at_and_log_spaced():
    assert scheduled_steps(10, every=4) == {4, 8}
    assert scheduled_steps(10, at=(3, 0, 11, 7)) == {3, 7}
    assert log_steps(1000, 4) == {1, 10, 100, 1000}
    assert scheduled_steps(100, every=50, log=3) == {1, 10, 50, 100}


def test_schedule_without_update_or_epoch_snapshots(tmp_path):
    cfg = _rigl(snapshot_updates=False, snapshot_epochs=False, snapshot_at=(5,))
    train(cfg, tmp_path / "r", progress=False)
    run = sift_graph.load_run(tmp_path / "r")
    assert [(s.step, s.reason) for s in run.snapshots] == [(0, "init"), (5, "every"), (12, "final")]
    assert len(list((tmp_path / "r" / "masks").glob("*.npz"))) == 5  # masks of every update still kept
    assert list(run.metrics["step"]) == [0, 4, 5, 8, 12]  # a metrics row at every epoch end
