"""--resume continues an interrupted run and ends bit-identical to an uninterrupted one (CPU)."""
import filecmp
from dataclasses import replace

import numpy as np
import pytest
import torch

from sift_graph import load_run
from sift_train.config import make_config
from sift_train.train import train


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rigl", "set"])
def test_resumed_run_is_bit_identical_to_uninterrupted(tmp_path, method):
    cfg = make_config("digits", dataset="synthetic", model="cnn", family="parallel", sparsity=0.75,
                      method=method, epochs=3, batch_size=32, update_interval=5, variant="official")
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "part", progress=False, stop_after_epoch=1)
    assert part["stopped"] and not (tmp_path / "part" / "done.json").exists()
    # an interruption mid-epoch leaves files written after the checkpoint; resume must discard them
    (tmp_path / "part" / "snapshots" / "step_00000011.npz").write_bytes(b"partial")
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed == full
    a, b = torch.load(tmp_path / "full" / "checkpoint" / "last.pt", weights_only=True), \
        torch.load(tmp_path / "part" / "checkpoint" / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for p, st in a["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"], b["optimizer"]["state"][p]["momentum_buffer"])
    assert filecmp.cmp(tmp_path / "full" / "metrics.csv", tmp_path / "part" / "metrics.csv", shallow=False)
    ra, rb = load_run(tmp_path / "full"), load_run(tmp_path / "part")
    assert [s.step for s in ra.snapshots] == [s.step for s in rb.snapshots]
    for sa, sb in zip(ra.snapshots, rb.snapshots):
        ta, tb = sa.load(), sb.load()
        assert all(np.array_equal(ta[n][0], tb[n][0]) and np.array_equal(ta[n][1], tb[n][1]) for n in ta)


def test_resume_of_finished_run_does_nothing(tmp_path):
    cfg = make_config("digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.5,
                      method="static", epochs=1, batch_size=64)
    done = train(cfg, tmp_path / "r", progress=False)
    assert train(cfg, tmp_path / "r", resume=True, progress=False) == done


def test_resume_with_a_different_config_is_refused(tmp_path):
    cfg = make_config("digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.5,
                      method="rigl", epochs=2, batch_size=64)
    train(cfg, tmp_path / "r", progress=False, stop_after_epoch=1)
    with pytest.raises(ValueError, match="different config.*lr"):
        train(replace(cfg, lr=0.3), tmp_path / "r", resume=True, progress=False)
