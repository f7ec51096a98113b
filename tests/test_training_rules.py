"""Rules of sparse training that sit on a rounding or branch boundary (each test is named as its rule;
each fails for the nearby wrong rule)."""
import math

import pytest
import torch
from torch import nn

from sift_train import mark_sparse
from sift_train.config import TrainConfig
from sift_train.distributions import erk
from sift_train.methods import drop_by_magnitude, get_method
from sift_train.models import build_model
from sift_train.schedule import UpdateSchedule
from sift_train.sparse_params import sparse_parameters
from sift_train.sparse_training import SparseTraining
from sift_train.train import mask_plan
from sift_train.widths import parallel_branches


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
    cfg = TrainConfig(model="cnn", dataset="digits", family="wide", sparsity=0.75, distribution="erk",
                      iso_flop=False)  # erk with iso_flop is refused (docs/training.md)
    model = build_model("cnn", in_shape=(1, 8, 8), num_classes=10, family="wide", sparsity=0.75,
                        device="meta")
    sparsity, _ = mask_plan(cfg, model)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n in sparsity}
    assert sparsity == erk(shapes, 0.75)


def test_rigl_grows_where_the_update_steps_own_dense_gradient_is_largest():
    # lr 0 keeps the weights; dL/dW[i, j] = x[j], so the grow must pick columns 6 and 7 of both rows
    layer = mark_sparse(nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 17.0).reshape(2, 8))
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :4] = True
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    schedule = UpdateSchedule(end=100, interval=1, drop_fraction=0.5, anneal="constant")
    sparse = SparseTraining.from_parts(layer, opt, {"weight": mask}, {"weight": 8}, get_method("rigl"),
                                       schedule, torch.Generator().manual_seed(0))
    layer(torch.tensor([[0.0, 0, 0, 0, 1, 2, 3, 4]])).sum().backward()
    opt.step()
    assert sparse.last_update_step == 1
    new = sparse.masking.masks["weight"]
    assert new[:, 6:].all() and int(new.sum()) == 8
    assert new[1, :4].all() and not new[0, :6].any() and not new[1, 4:6].any()  # kept: the 4 largest |w|


@pytest.mark.parametrize("s, k", [(0.35, 2), (0.65, 3), (0.8, 5), (0.9, 10)])
def test_paper_parallel_branches_are_the_nearest_integer_of_one_over_density(s, k):
    assert parallel_branches(s, "paper") == k == round(1 / (1 - s))


@pytest.mark.parametrize("family", ["wide", "parallel", "factorized", "doped"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_small_models_at_zero_sparsity_are_the_dense_model_for_every_family(name, family):
    kw = {"in_shape": (1, 8, 8), "num_classes": 10, "device": "meta"}
    got = build_model(name, family=family, sparsity=0.0, **kw)
    dense = build_model(name, family="dense", sparsity=0.0, **kw)
    assert {n: p.shape for n, p in got.state_dict().items()} == {n: p.shape for n, p in dense.state_dict().items()}
    assert sparse_parameters(got) == {}
