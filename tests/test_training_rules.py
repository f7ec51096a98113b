"""Rules of sparse training that sit on a rounding or branch boundary (each test is named as its rule;
each fails for the nearby wrong rule)."""
import math

import pytest
import torch

from sift_train.config import TrainConfig
from sift_train.distributions import erk
from sift_train.methods import drop_by_magnitude
from sift_train.models import build_model
from sift_train.schedule import UpdateSchedule
from sift_train.train import mask_plan


def test_drop_removes_int_of_alpha_times_active_entries_rounded_down():
    w = torch.arange(1.0, 11.0)  # 10 active entries
    kept = drop_by_magnitude(w, torch.ones(10, dtype=torch.bool), 0.27)  # int(2.7) = 2 dropped, not 3
    assert kept.tolist() == [False, False] + [True] * 8


def test_updates_end_at_int_of_end_fraction_times_all_steps():
    assert UpdateSchedule.for_training(10, 0.75).end == 7  # int(7.5), DYN:99-102
    assert UpdateSchedule.for_training(391 * 200, 0.75).end == 58650  # spec §2.5


@pytest.mark.parametrize("s", [0.3, 0.8, 0.9])
def test_erk_keeps_the_overall_density_when_layers_are_made_dense(s):
    shapes = {"tiny": (4, 2, 1, 1), "mid": (16, 8, 3, 3), "big": (256, 256, 3, 3)}
    got = erk(shapes, s)
    assert got["tiny"] == 0.0  # raw ERK density > 1: made dense by the capacity loop
    total = sum(math.prod(sh) for sh in shapes.values())
    active = sum((1 - got[n]) * math.prod(sh) for n, sh in shapes.items())
    assert active == pytest.approx((1 - s) * total, rel=1e-12)


def test_iso_flop_plan_applies_only_to_the_uniform_distribution():
    cfg = TrainConfig(model="cnn", dataset="digits", family="wide", sparsity=0.75, distribution="erk")
    model = build_model("cnn", in_shape=(1, 8, 8), num_classes=10, family="wide", sparsity=0.75,
                        device="meta")
    sparsity, _ = mask_plan(cfg, model)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n in sparsity}
    assert sparsity == erk(shapes, 0.75)
