"""Iso-FLOP mask-sparsity search (paper App. A.2; spec §3.3, §6.1)."""
import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sift_train.accounting import forward_flops, trace
from sift_train.counts import active_count
from sift_train.isoflop import iso_flop_sparsity, plan_for, plan_masks, refine_counts
from sift_train.models import build_model
from sift_train.sparse_params import mark_sparse, sparse_parameters

CIFAR = {"in_shape": (3, 32, 32), "num_classes": 100}
DENSE_FLOPS = 1_110_937_700  # spec §5: dense CIFAR-100 ResNet-18, 2xMAC
PROFILER_BUDGET = 1_115_226_800  # LAUNCH:25


@pytest.mark.parametrize("family", ["wide", "parallel", "factorized", "doped"])
@pytest.mark.parametrize("s", [0.5, 0.75, 0.9])
def test_paper_search_matches_dense_flops_for_every_family(family, s):
    plan = plan_masks("resnet18", family=family, sparsity=s, **CIFAR)
    assert plan.searched and plan.dense_flops == DENSE_FLOPS
    assert abs(plan.flops / DENSE_FLOPS - 1) < 1e-6
    model = build_model("resnet18", family=family, sparsity=s, device="meta", **CIFAR)
    assert forward_flops(model, (3, 32, 32), plan.active) == plan.flops  # the counts are the plan
    uniform = {n: int((1 - plan.mask_sparsity) * p.numel()) for n, p in sparse_parameters(model).items()}
    assert sum(abs(plan.active[n] - uniform[n]) for n in uniform) <= 0.001 * sum(uniform.values())


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (1, 28, 28))])
@pytest.mark.parametrize("family", ["wide", "parallel", "factorized", "doped"])
def test_paper_search_on_small_models_within_1e_4(name, shape, family):
    for s in (0.5, 0.9):
        plan = plan_masks(name, in_shape=shape, num_classes=10, family=family, sparsity=s)
        assert plan.rel_error < 1e-4


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("cnn", (1, 28, 28))])
def test_small_model_dense_flops_agree_with_torch_flop_counter(name, shape):
    """The denominator of ``rel_error`` above, counted by torch: 2 x MAC plus one add per Linear bias."""
    plan = plan_masks(name, in_shape=shape, num_classes=10, family="wide", sparsity=0.5)
    dense = build_model(name, in_shape=shape, num_classes=10, device="meta").eval()
    with FlopCounterMode(display=False) as counter:
        dense(torch.zeros(1, *shape, device="meta"))
    assert not any(isinstance(m, nn.Conv2d) and m.bias is not None for m in dense.modules())
    bias_adds = sum(m.out_features for m in dense.modules()
                    if isinstance(m, nn.Linear) and m.bias is not None)
    assert plan.dense_flops == counter.get_total_flops() + bias_adds


@pytest.mark.parametrize("s, mask_s, active, flops, prof", [
    # spec §3.3 "code path, expected-density masks" and §5 "code's search stop" rows
    (0.5, 0.496043, 11_207_524, 1_108_640_068, 1_114_677_266),
    (0.75, 0.751928, 11_196_591, 1_106_030_948, 1_114_620_384),
    (0.9, 0.901113, 11_188_723, 1_102_284_676, 1_115_842_219),
])
def test_official_wide_search_reproduces_released_code(s, mask_s, active, flops, prof):
    plan = plan_masks("resnet18", family="wide", sparsity=s, variant="official", **CIFAR)
    assert plan.dense_profiler_flops == PROFILER_BUDGET
    assert round(plan.mask_sparsity, 6) == mask_s
    assert abs(plan.profiler_flops / PROFILER_BUDGET - 1) <= 1e-3
    model = build_model("resnet18", family="wide", sparsity=s, variant="official", device="meta", **CIFAR)
    total = sum(p.numel() for p in model.parameters())
    sparse = sum(p.numel() for p in sparse_parameters(model).values())
    assert (total - sparse + sum(plan.active.values()), plan.flops, plan.profiler_flops) == (
        active, flops, prof)


@pytest.mark.parametrize("family", ["parallel", "factorized", "doped"])
def test_official_other_families_train_at_nominal_sparsity(family):
    plan = plan_masks("resnet18", family=family, sparsity=0.75, variant="official", **CIFAR)
    assert not plan.searched and plan.mask_sparsity == 0.75


def test_dense_family_sparse_training_uses_nominal_sparsity():
    for variant in ("paper", "official"):
        plan = plan_masks("cnn", in_shape=(1, 8, 8), num_classes=10, family="dense", sparsity=0.8,
                          variant=variant)
        assert not plan.searched and plan.mask_sparsity == 0.8 and plan.flops < plan.dense_flops


def test_zero_sparsity_plan_is_dense():
    plan = plan_masks("resnet18", family="wide", sparsity=0.0, **CIFAR)
    assert plan.active == {} and plan.mask_sparsity == 0.0 and plan.flops == DENSE_FLOPS


def test_search_finds_closed_form_solution():
    # two sparse 10x10 layers without bias on a vector: FLOPs = 2 * (a1 + a2) active weights
    model = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 10, bias=False))
    mark_sparse(model[0])
    mark_sparse(model[1])
    shapes = trace(model, (10,))
    s = iso_flop_sparsity(shapes, target=2 * 2 * 30)  # 30 active weights per layer
    assert active_count(100, s) == 30


def test_isoflop_search_lands_on_the_brute_force_closest_step():
    # a sparse conv (576 weights, 36 positions) and a sparse linear (23,040 weights, 1 position) before a
    # dense head: uniform density t = 1 - s gives counts (floor(t*n1), floor(t*n2)); every reachable pair
    # is enumerated with integers, so the closest reachable FLOPs are known exactly. The steps are
    # ~4e-5 apart in s: a search that stops early (e.g. after 10 halvings) lands on the wrong one.
    model = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(16 * 36, 40, bias=False), nn.Linear(40, 5))
    mark_sparse(model[0])
    mark_sparse(model[2])
    (n1, p1), n2, head = (576, 36), 576 * 40, 2 * 40 * 5 + 5
    pairs = {(n1, n2)} | {(c1, c2) for c1 in range(n1)
                          for c2 in range(c1 * n2 // n1, -(-(c1 + 1) * n2 // n1))}
    reachable = sorted({2 * (c1 * p1 + c2) + head for c1, c2 in pairs})
    shapes = trace(model, (4, 6, 6))
    rng = random.Random(0)
    for target in [rng.randint(reachable[0], reachable[-1]) for _ in range(40)]:
        best = min(reachable, key=lambda f: (abs(f - target), f))  # ties: the cheaper step
        s = iso_flop_sparsity(shapes, target)
        got = 2 * (active_count(n1, s) * p1 + active_count(n2, s)) + head
        assert got == best, target


def test_refined_counts_land_within_half_the_cheapest_weights_flops_of_the_target():
    # a cheap sparse conv (16 positions: 32 FLOPs per weight) before a costly one (64 positions: 128);
    # refine_counts must close the gap costliest-first and round, leaving at most 32 / 2 FLOPs
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.Upsample(scale_factor=2),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False))
    mark_sparse(model[0])
    mark_sparse(model[2])
    shapes = trace(model, (4, 4, 4))
    start = {"0.weight": 144, "2.weight": 288}
    rng = random.Random(0)
    for target in [rng.randint(2 * 64 * 100, 2 * (288 * 16 + 576 * 64) - 2 * 64 * 100) for _ in range(50)]:
        got = refine_counts(shapes, start, target)
        flops = 2 * (got["0.weight"] * 16 + got["2.weight"] * 64)
        assert abs(flops - target) <= 16, target


def test_unreachable_target_rejected():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))
    mark_sparse(model[1])
    shapes = trace(model, (10,))
    with pytest.raises(ValueError, match="unmasked layers alone cost"):
        iso_flop_sparsity(shapes, target=50)
    with pytest.raises(ValueError, match="dense masks give"):
        iso_flop_sparsity(shapes, target=10**6)


def test_plan_for_rejects_bad_sparsity():
    model = build_model("mlp", in_shape=(1, 8, 8), num_classes=10, device="meta")
    with pytest.raises(ValueError, match="sparsity must be in"):
        plan_for(model, model, (1, 8, 8), family="wide", sparsity=-0.5)
