"""Run folder round trip: what sift_graph.load_run returns equals what was in the model."""
import json

import numpy as np
import pytest
import torch

from sift_graph import load_run
from sift_train.config import make_config
from sift_train.masking import read_masks
from sift_train.rundir import RunDir
from sift_train.sparse_params import sparse_parameters
from sift_train.train import build, train


def _cfg(**kw):
    base = dict(dataset="synthetic", model="cnn", family="wide", sparsity=0.75, method="rigl",
                epochs=2, batch_size=32, update_interval=3, seed=0)
    return make_config("digits", **{**base, **kw})


def test_snapshot_round_trip_equals_model_tensors(tmp_path):
    cfg = _cfg()
    train(cfg, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    # the final snapshot equals the trained model (restored from the run's final checkpoint)
    model = build(cfg).model
    ckpt = torch.load(tmp_path / "run" / "checkpoint" / "last.pt", weights_only=True)
    model.load_state_dict(ckpt["model"])
    final = run.snapshots[-1].load()
    masks = read_masks(model)
    params = sparse_parameters(model)
    assert list(final) == list(params)
    for name, (mask, weight) in final.items():
        assert mask.dtype == bool and weight.dtype == np.float32
        assert np.array_equal(mask, masks[name].numpy())
        assert np.array_equal(weight, params[name].detach().numpy())
        assert weight.shape == tuple(params[name].shape)


def test_epoch_end_snapshot_equals_the_model_at_that_step(tmp_path):
    cfg = _cfg(method="set")
    train(cfg, tmp_path / "run", progress=False, stop_after_epoch=1)  # checkpoint at step 8
    model = build(cfg).model
    model.load_state_dict(torch.load(tmp_path / "run" / "checkpoint" / "last.pt", weights_only=True)["model"])
    snap = {s.step: s for s in load_run(tmp_path / "run").snapshots}[8].load()
    for name, p in sparse_parameters(model).items():
        assert np.array_equal(snap[name][1], p.detach().numpy())
        assert np.array_equal(snap[name][0], read_masks(model)[name].numpy())


def test_snapshots_cover_init_epoch_ends_and_every_mask_update(tmp_path):
    cfg = _cfg()
    train(cfg, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    steps_per_epoch = 8  # 256 synthetic training samples / 32
    updates = [t for t in range(3, int(0.75 * 16), 3)]
    assert [s.step for s in run.snapshots] == sorted({0, 8, 16, *updates})
    assert run.snapshots[0].reason == "init" and run.snapshots[-1].reason == "final"
    assert {s.reason for s in run.snapshots if s.step in updates} == {"mask_update"}
    accs = dict(zip(run.metrics["step"], run.metrics["test_acc"]))
    assert all(s.test_acc == pytest.approx(accs[s.step]) for s in run.snapshots)
    assert run.metrics["epoch"].iloc[-1] == 2.0 and run.snapshots[1].epoch == 3 / steps_per_epoch
    assert (run.metrics["flops"] > 0).all()
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config"]["method"] == "rigl" and meta["config"]["sparsity"] == 0.75
    assert set(meta["mask_sparsity"]) == set(meta["sparse_tensors"]) == set(run.snapshots[0].tensors)
    # paper variant: exact-count masks from the start, counts as recorded in config.json
    for snap in (run.snapshots[0], run.snapshots[-1]):
        for name, (mask, _) in snap.load().items():
            assert int(mask.sum()) == meta["sparse_tensors"][name]["active"]
    assert json.loads((tmp_path / "run" / "done.json").read_text())["step"] == 16


def test_snapshot_masks_change_only_for_dynamic_methods(tmp_path):
    for method in ("static", "rigl"):
        train(_cfg(method=method), tmp_path / method, progress=False)
        snaps = [s.load() for s in load_run(tmp_path / method).snapshots]
        same = all(np.array_equal(a[n][0], b[n][0]) for a, b in zip(snaps, snaps[1:]) for n in a)
        assert same == (method == "static")


def test_snapshot_every_adds_periodic_snapshots(tmp_path):
    train(_cfg(method="static", snapshot_every=5), tmp_path / "run", progress=False)
    assert [s.step for s in load_run(tmp_path / "run").snapshots] == [0, 5, 8, 10, 15, 16]


def test_existing_folder_is_not_overwritten_without_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(ValueError, match="pass --resume"):
        train(_cfg(), tmp_path / "run", progress=False)


def test_no_temporary_files_are_left_behind(tmp_path):
    train(_cfg(epochs=1), tmp_path / "run", progress=False)
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.endswith(".tmp")]
    assert RunDir(tmp_path / "run").done
