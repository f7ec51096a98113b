"""The one active-count rule (sift_train.counts): floor((1 - s) * numel) on the decimal s, used by every
path that turns a sparsity into counts."""
import math
import random
from fractions import Fraction

import torch
from torch import nn

from sift_train import mark_sparse
from sift_train.accounting import active_counts, trace
from sift_train.config import TrainConfig
from sift_train.counts import active_count, count_at_density
from sift_train.isoflop import plan_from_shapes
from sift_train.masking import random_masks
from sift_train.train import mask_plan


def test_active_count_is_the_floor_of_the_exact_decimal_product():
    assert (1 - 0.8) * 3840 < 768  # the float product falls just below the integer ...
    assert active_count(3840, 0.8) == 768  # ... the paper rule does not
    assert active_count(1152, 0.9) == 115  # sparse-ift.md §2.5: count snap 112 -> 115
    assert active_count(10, 0.0) == 10 and active_count(10, 1.0) == 0


def test_official_count_is_the_released_codes_float_truncation():
    assert active_count(3840, 0.8, "official") == 767  # int(767.9999999999998)
    assert active_count(1152, 0.9, "official") == 115
    assert active_count(3841, 0.8, "official") == 768 == active_count(3841, 0.8)


def test_active_count_agrees_with_integer_arithmetic_on_percent_sparsities():
    for k in range(101):
        for n in range(0, 2001, 7):
            assert active_count(n, k / 100) == (100 - k) * n // 100, (k, n)


def test_active_count_agrees_with_fraction_arithmetic_on_random_decimals():
    rng = random.Random(0)
    for _ in range(20000):
        places = rng.randint(1, 8)
        text = f"0.{rng.randrange(10 ** places):0{places}d}"
        n = rng.choice([rng.randrange(1, 10_000), rng.randrange(1, 10 ** 12)])
        n -= n % 10 ** rng.randint(0, 3)  # make exact integer products common
        expected = math.floor((1 - Fraction(text)) * n)
        assert active_count(n, float(text)) == expected, (text, n)


def test_every_sparsity_to_count_path_uses_the_one_rule():
    layer = mark_sparse(nn.Linear(60, 64, bias=False))  # numel 3840: 768 active at s = 0.8
    model = nn.Sequential(layer)
    assert active_counts(model, 0.8) == {"0.weight": 768}
    shapes = trace(model, (60,))
    plan = plan_from_shapes(shapes, shapes, family="dense", sparsity=0.8)
    assert plan.active == {"0.weight": 768}
    assert active_counts(model, 0.8, "official") == {"0.weight": 767}
    plan = plan_from_shapes(shapes, shapes, family="dense", sparsity=0.8, variant="official")
    assert plan.active == {"0.weight": 767}
    for variant, count in (("paper", 768), ("official", 767)):
        cfg = TrainConfig(model="mlp", dataset="digits", family="dense", sparsity=0.8, iso_flop=False,
                          variant=variant)
        assert mask_plan(cfg, model)[1] == {"0.weight": count}
    masks = random_masks({"0.weight": (64, 60)}, {"0.weight": 0.8}, torch.Generator().manual_seed(0))
    assert int(masks["0.weight"].sum()) == 768


def test_density_counts_follow_the_same_rule():
    assert count_at_density(3840, 0.2) == 768 == active_count(3840, 0.8)  # 0.2 * 3840 is exact in decimals
    rng = random.Random(1)
    for _ in range(2000):
        k, n = rng.randrange(1001), rng.randrange(1, 10 ** 9)
        assert count_at_density(n, k / 1000) == k * n // 1000 == active_count(n, (1000 - k) / 1000), (k, n)
