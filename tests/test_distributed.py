"""2-process DDP on CPU (Gloo): identical masks on every rank, equal to one process with the same global
batch; rank-0-only writes; resume of a 2-process checkpoint in one process.

Tolerance: one process computes the batch-mean gradient in one reduction, two processes as the mean of
two half-batch means (DDP all-reduce), so weights differ by float rounding (checked to 1e-5). The masks
are compared exactly: the tiny MLP below has no near-ties in |w| or |grad| at the compared updates, but a
near-tie could in principle flip under the other reduction order (docs/training.md)."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

import ddp_worker
from sift_train.config import make_config
from sift_train.methods import MaskMethod
from sift_train.train import train

pytestmark = pytest.mark.slow

CFG = dict(preset="digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.75, epochs=2,
           batch_size=32, update_interval=2, lr=0.05)
# 256 samples / 32 = 8 steps per epoch; 2 epochs = 16 steps, updates at t = 2, 4, 6, 8, 10 (end = 12)
N_UPDATES = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    jobs = [("rigl", {**CFG, "method": "rigl"}, {}),
            ("set", {**CFG, "method": "set"}, {}),
            ("part", {**CFG, "method": "rigl", "epochs": 3}, {"stop_after_epoch": 1}),
            ("disagree", {}, {}),
            ("seeds", {**CFG, "method": "set", "seed": "<rank>"}, {})]
    mp.spawn(ddp_worker.run, args=(2, _free_port(), str(base), jobs), nprocs=2, join=True)
    return base


def _single(out, monkeypatch, cfg, **kw):
    """One-process run with the same global batch; returns (info, masks installed at each update)."""
    history = []
    original = MaskMethod.update_masks

    def recording(self, *args):
        new = original(self, *args)
        history.append({n: m.detach().cpu().clone() for n, m in new.items()})
        return new

    with monkeypatch.context() as m:
        m.setattr(MaskMethod, "update_masks", recording)
        info = train(make_config(**cfg), out, progress=False, device="cpu", **kw)
    return info, history


def _same_masks(a, b):
    assert len(a) == len(b)
    for ma, mb in zip(a, b):
        assert ma.keys() == mb.keys()
        assert all(torch.equal(ma[n], mb[n]) for n in ma)


def _model(path):
    return torch.load(path / "checkpoint" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_masks_identical_on_both_ranks_after_every_update(ddp, method):
    r0 = torch.load(ddp / f"{method}.masks.rank0.pt", weights_only=True)
    r1 = torch.load(ddp / f"{method}.masks.rank1.pt", weights_only=True)
    assert len(r0) == N_UPDATES
    _same_masks(r0, r1)
    assert any(not torch.equal(r0[0][n], r0[-1][n]) for n in r0[0])  # the masks did move


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_two_processes_equal_one_process_with_the_same_global_batch(ddp, tmp_path, monkeypatch, method):
    info, single = _single(tmp_path / "one", monkeypatch, {**CFG, "method": method})
    _same_masks(torch.load(ddp / f"{method}.masks.rank0.pt", weights_only=True), single)
    two = json.loads((ddp / f"{method}.info.rank0.json").read_text())
    assert two["step"] == info["step"] == 16
    a, b = _model(ddp / method), _model(tmp_path / "one")
    for k in a:
        if k.endswith("_mask"):
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    assert json.loads((ddp / f"{method}.info.rank1.json").read_text())["test_acc"] == two["test_acc"]


def test_only_rank_0_writes_the_run_folder(ddp):
    assert json.loads((ddp / "writes.rank1.json").read_text()) == []
    written = json.loads((ddp / "writes.rank0.json").read_text())
    assert any(w.endswith("done.json") for w in written) and any("last.pt" in w for w in written)
    assert (ddp / "rigl" / "done.json").is_file() and (ddp / "set" / "config.json").is_file()


def test_two_process_checkpoint_resumes_in_one_process(ddp, tmp_path, monkeypatch):
    cfg = {**CFG, "method": "rigl", "epochs": 3}
    full, full_masks = _single(tmp_path / "full", monkeypatch, cfg)
    part_masks = torch.load(ddp / "part.masks.rank0.pt", weights_only=True)  # updates in epoch 1
    info, rest = _single(ddp / "part", monkeypatch, cfg, resume=True)
    assert info["step"] == full["step"] == 24
    _same_masks(part_masks + rest, full_masks)
    a, b = _model(ddp / "part"), _model(tmp_path / "full")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)


def test_ranks_with_different_masks_stop_with_a_clear_error(ddp):
    for rank in (0, 1):
        text = (ddp / f"disagree.rank{rank}.txt").read_text()
        assert text.startswith("ranks disagree on the masks after the update at step 7"), text


def test_torchrun_cli_trains_one_run(tmp_path):
    """``torchrun --nproc-per-node 2 -m sift_train train ...`` (Gloo on CPU): one run folder, one result line."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "sift_train", "train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1",
           "--batch-size", "32", "--device", "cpu", "--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("test accuracy") == 1
    assert json.loads((out / "done.json").read_text())["step"] == 8


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_nccl_on_two_gpus_keeps_masks_identical(tmp_path):
    jobs = [(m, {**CFG, "model": "cnn", "method": m, "amp": "bf16"}, {}) for m in ("rigl", "set")]
    mp.spawn(ddp_worker.run, args=(2, _free_port(), str(tmp_path), jobs, "cuda"), nprocs=2, join=True)
    for m in ("rigl", "set"):
        r0, r1 = (torch.load(tmp_path / f"{m}.masks.rank{r}.pt", weights_only=True) for r in (0, 1))
        assert len(r0) == N_UPDATES
        _same_masks(r0, r1)


def test_rank_0_initial_masks_and_generator_reach_every_rank(ddp):
    """Rank r is given seed r: its own initial masks, SET draws and data order differ, yet after the
    broadcast from rank 0 both ranks make the same updates."""
    r0 = torch.load(ddp / "seeds.masks.rank0.pt", weights_only=True)
    r1 = torch.load(ddp / "seeds.masks.rank1.pt", weights_only=True)
    assert len(r0) == N_UPDATES
    _same_masks(r0, r1)
