"""GraNet (spec methods.md §2.8) and its training-FLOPs Iso-FLOP search (§2.6)."""
import csv
import json
import math

import pytest
import torch

from sift_train.methods.granet import GraNet, global_magnitude_prune, regenerate
from sift_train.schedule import GraNetSchedule, split_count

# CIFAR-100 example of §2.2: |L| = 391, ΔT = 1000, prune epochs 0 -> 80, d_i 0.5, d_f 0.1, 160 epochs
SPEC = GraNetSchedule(total=391 * 160, final_density=0.1, prune_end=80 * 391, init_density=0.5, interval=1000,
                      numels=(("a", 10_000), ("b", 10_000)))


def test_cubic_densities_per_event():
    n = 31  # j1 = int(80 * 391 / 1000)
    events = [t for t in range(1, SPEC.total + 1) if SPEC.is_prune_step(t)]
    assert events == [1000 * j for j in range(1, n)]
    for j in range(1, n):
        expected = 0.1 + 0.4 * (1 - j / n) ** 3
        assert SPEC.density_at(1000 * j) == pytest.approx(expected, abs=1e-12)
        assert SPEC.count_at(1000 * j) == math.floor(20_000 * expected + 1e-9)
    assert [round(SPEC.density_at(t), 6) for t in (1000, 2000, 3000, 29000, 30000)] == [
        0.462526, 0.427468, 0.394747, 0.100107, 0.100013]
    assert SPEC.density_at(999) == 0.5 and SPEC.density_at(60_000) == SPEC.density_at(30_000)


def test_regeneration_rate_cosine():
    assert SPEC.drop_fraction_at(1000) == pytest.approx(0.499688, abs=1e-6)
    assert SPEC.drop_fraction_at(31280) == pytest.approx(0.2525, abs=1e-9)
    assert SPEC.drop_fraction_at(62560) == pytest.approx(0.005, abs=1e-12)


def test_regeneration_keeps_count_and_grows_only_inactive_by_gradient():
    w = torch.tensor([0.9, -0.1, 0.5, 0.0, 0.0, 0.0])
    mask = torch.tensor([True, True, True, False, False, False])
    grad = torch.tensor([0.0, 0.0, 0.0, 0.2, -3.0, 1.0])
    new = regenerate(w, grad, mask, 0.5)  # ceil(0.5 * 3) = 2 dropped: -0.1, 0.5; grow |grad| 3.0, 1.0
    assert new.tolist() == [True, False, False, False, True, True]
    assert regenerate(w, grad, mask, 0.0).equal(mask)


def test_global_prune_vs_layer_magnitudes():
    g = torch.Generator().manual_seed(0)
    weights = {"big": 0.5 + torch.rand(100, generator=g), "small": 0.01 * torch.rand(100, generator=g)}
    masks = {n: torch.ones(100, dtype=torch.bool) for n in weights}
    out = global_magnitude_prune(weights, masks, 100)
    assert int(out["big"].sum()) == 99 and int(out["small"].sum()) == 1  # guard keeps one entry
    assert split_count(100, {"a": 3, "b": 1}) == {"a": 75, "b": 25}


@pytest.mark.slow
def test_granet_run_exact_counts_and_zero_inactive():
    from sift_train.config import make_config
    from sift_train.data import prepare
    from sift_train.train import build

    cfg = make_config("digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.5, method="granet",
                      epochs=4, batch_size=32, update_interval=2, iso_flop=False)
    setup = build(cfg)
    sched, sparse = setup.sparse.schedule, setup.sparse
    assert isinstance(sparse.method, GraNet)
    assert all(bool(m.all()) for m in sparse.masking.masks.values())  # dense-to-sparse
    for epoch in range(cfg.epochs):
        for x, y, gen in setup.batches.epoch(epoch):
            setup.optimizer.zero_grad()
            before = sparse.masking.active_counts()
            torch.nn.functional.cross_entropy(setup.model(prepare(x, setup.data, True, gen)), y).backward()
            setup.optimizer.step()
            t, counts = sparse.step, sparse.masking.active_counts()
            if sched.is_prune_step(t):
                assert sum(counts.values()) == math.floor(sched.total_entries * sched.density_at(t) + 1e-9)
            else:
                assert counts == before  # regeneration alone keeps every tensor's count
            for n, p in sparse.masking.params.items():
                assert bool((p.detach()[~sparse.masking.masks[n]] == 0).all())
    assert sum(sparse.masking.active_counts().values()) < sched.total_entries * 0.6


def _dense_mlp_flops(widths, d_in=64, classes=10):
    """2xMAC + bias adds of the dense mlp (64 -> 256 -> 256 -> 256 -> 10), written out."""
    dims = [d_in, *widths, classes]
    return sum(2 * a * b + b for a, b in zip(dims[:-1], dims[1:]))


def test_isoflop_granet_run_matches_dense_training_flops(tmp_path):
    from sift_train.config import make_config
    from sift_train.train import train

    cfg = make_config("digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.5, method="granet",
                      epochs=3, batch_size=32, update_interval=2)
    train(cfg, tmp_path / "g", progress=False)
    conf = json.loads((tmp_path / "g" / "config.json").read_text())
    rec = conf["granet"]
    assert rec["nominal_sparsity"] == 0.5 and 0 < rec["searched_sparsity"] < 1
    rows = list(csv.DictReader((tmp_path / "g" / "metrics.csv").open()))
    steps = [int(r["step"]) for r in rows]
    flops = [int(r["flops"]) for r in rows]
    total_steps = steps[-1]
    # every update is recorded just before it (docs/run-format.md): the masks of the row at step b were in
    # effect for the steps since the previous row, a+1 .. b
    run_flops = sum((b - a) * f for a, b, f in zip(steps[:-1], steps[1:], flops[1:]))
    dense = _dense_mlp_flops((256, 256, 256)) * total_steps
    assert abs(run_flops / dense - 1) < 1e-3


def test_isoflop_search_says_when_infeasible():
    from sift_train.config import make_config
    from sift_train.train import build

    cfg = make_config("digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.9, method="granet",
                      epochs=3, batch_size=32, update_interval=2, prune_end_fraction=1.0)
    with pytest.raises(ValueError, match="no target sparsity meets the dense training FLOPs"):
        build(cfg)


def test_table2_sweep_preset_covers_the_methods_and_granet_is_feasible():
    from sift_train.sweep import load_sweep, sweep_configs
    from sift_train.train import build

    cfgs = [cfg for _, cfg in sweep_configs(load_sweep(preset="table2"))]
    assert {c.method for c in cfgs if c.sparsity > 0} == {"static", "snip", "grasp", "force", "set", "rigl",
                                                           "granet"}
    for cfg in cfgs:
        if cfg.method == "granet":
            rec = build(cfg).extra["granet"]
            assert rec["nominal_sparsity"] == cfg.sparsity and rec["searched_sparsity"] > cfg.sparsity


def test_granet_and_synflow_in_a_users_loop_through_prepare():
    from torch import nn

    from sift_train import mark_sparse, sparse_parameters
    from sift_train.methods import get_method
    from sift_train.methods.pruning_at_init import ScoringData
    from sift_train.schedule import UpdateSchedule
    from sift_train.sparse_training import SparseTraining

    make = getattr(SparseTraining, "from_parts", SparseTraining)
    for name in ("granet", "synflow"):
        torch.manual_seed(0)
        net = nn.Sequential(mark_sparse(nn.Linear(6, 20)), nn.ReLU(), mark_sparse(nn.Linear(20, 3)))
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        params = sparse_parameters(net)
        masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
        targets = {n: p.numel() // 4 for n, p in params.items()}
        method = get_method(name)
        masks, targets, sched = method.prepare(
            net, masks, targets, UpdateSchedule(end=30, interval=3), total_steps=40,
            generator=torch.Generator().manual_seed(0), data=ScoringData(lambda: iter(()), (6,)))
        sparse = make(net, opt, masks, targets, method, sched, torch.Generator().manual_seed(0))
        x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
        for _ in range(40):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        total = sum(sparse.masking.active_counts().values())
        assert total == (sched.count_at(40) if name == "granet" else (120 + 60) // 4)
        assert total < 180 * 0.3
