"""LR per optimizer step: linear warm-up, multi-step or cosine (sift_train/lr.py), and --max-steps."""
import math

import pytest

from sift_train.config import lr_at_epoch, make_config
from sift_train.lr import lr_at, total_steps
from sift_train.train import train

SPE = 10  # steps per epoch


def test_warmup_rises_linearly_to_the_base_lr():
    cfg = make_config("cifar", lr=0.4, warmup_epochs=2, milestones=(5,))
    assert [lr_at(cfg, s, SPE) for s in (0, 9, 19)] == pytest.approx([0.4 / 20, 0.4 * 10 / 20, 0.4])
    assert lr_at(cfg, 20, SPE) == pytest.approx(0.4)


def test_step_schedule_is_the_per_epoch_milestone_rule():
    for variant in ("paper", "official"):
        cfg = make_config("cifar", variant=variant)
        assert all(lr_at(cfg, s, SPE) == lr_at_epoch(cfg, s // SPE) for s in range(0, 2000, 7))


def test_cosine_decays_from_lr_to_zero_after_warmup():
    cfg = make_config("cifar", lr=0.2, lr_schedule="cosine", epochs=10, warmup_epochs=1)
    assert total_steps(cfg, SPE) == 100
    # after 10 warm-up steps: 0.2 * (1 + cos(pi * k / 90)) / 2
    for k in (0, 30, 45, 89):
        assert lr_at(cfg, 10 + k, SPE) == pytest.approx(0.1 * (1 + math.cos(math.pi * k / 90)))
    assert lr_at(cfg, 55, SPE) == pytest.approx(0.1)


def test_max_steps_caps_the_run_and_the_mask_schedule(tmp_path):
    cfg = make_config("digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.75,
                      method="rigl", epochs=5, batch_size=32, update_interval=2, max_steps=12,
                      lr_schedule="cosine")
    assert total_steps(cfg, 8) == 12
    info = train(cfg, tmp_path / "r", progress=False, device="cpu")
    assert info["step"] == 12 and info["epoch"] == 1.5
    steps = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "r" / "snapshots").iterdir())
    # updates at 2, 4, 6, 8 (end = int(0.75 * 12) = 9), epoch end 8, final 12
    assert steps == [0, 2, 4, 6, 8, 12]
