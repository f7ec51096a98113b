"""SNIP, GraSP, FORCE, SynFlow (spec methods.md §3.6) against gradients and closed forms written here."""
import json

import pytest
import torch
from torch import nn

from sift_train import mark_sparse
from sift_train.methods.pruning_at_init import (FORCE, SNIP, GraSP, ScoringData, SynFlow, exponential_counts,
                                                global_topk, grasp_scores, snip_scores, synflow_scores)


class TwoLayer(nn.Module):
    def __init__(self, w1, w2):
        super().__init__()
        self.fc1 = mark_sparse(nn.Linear(w1.shape[1], w1.shape[0], bias=False))
        self.fc2 = mark_sparse(nn.Linear(w2.shape[1], w2.shape[0], bias=False))
        with torch.no_grad():
            self.fc1.weight.copy_(w1)
            self.fc2.weight.copy_(w2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _data(x, y):
    return ScoringData(lambda: iter([(x, y)]), tuple(x.shape[1:]))


def test_snip_scores_match_hand_written_backprop():
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    x, y = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    net = TwoLayer(w1, w2).double()
    s = snip_scores(net, _data(x, y))
    # L = mean CE(W2 relu(W1 x)): δ2 = (softmax − onehot)/B, dW2 = δ2ᵀ h, dW1 = ((δ2 W2) ⊙ 1[a > 0])ᵀ x
    a = x @ w1.T
    h = a.clamp_min(0)
    p = torch.softmax(h @ w2.T, 1)
    d2 = (p - nn.functional.one_hot(y, 3).double()) / len(y)
    g2 = d2.T @ h
    g1 = ((d2 @ w2) * (a > 0).double()).T @ x
    assert torch.allclose(s["fc1.weight"], (w1 * g1).abs(), atol=1e-12)
    assert torch.allclose(s["fc2.weight"], (w2 * g2).abs(), atol=1e-12)


def test_synflow_spec_toy_and_conservation():
    net = TwoLayer(torch.tensor([[1.0, 2.0], [3.0, 0.5]]), torch.tensor([[0.5, 2.0]]))
    s = synflow_scores(net, (2,))
    assert s["fc1.weight"].tolist() == [[0.5, 1.0], [6.0, 1.0]]
    assert s["fc2.weight"].tolist() == [[1.5, 7.0]]
    assert float(s["fc1.weight"].sum()) == float(s["fc2.weight"].sum()) == 8.5  # R = 8.5 per layer
    flipped = TwoLayer(torch.tensor([[-1.0, 2.0], [3.0, -0.5]]), torch.tensor([[0.5, -2.0]]))
    assert synflow_scores(flipped, (2,))["fc1.weight"].tolist() == [[0.5, 1.0], [6.0, 1.0]]


def test_grasp_scores_match_closed_form_hessian_product():
    # one linear layer, logits z = W x / T: Hg of mean CE written out with the softmax Jacobian
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.arange(30) % 3
    net = mark_sparse(nn.Linear(4, 3, bias=False)).double()
    with torch.no_grad():
        net.weight.copy_(w)
    s = grasp_scores(net, _data(x, y))
    t = 200.0
    p = torch.softmax(x @ w.T / t, 1)
    grad = ((p - nn.functional.one_hot(y, 3).double()).T @ x) / (len(y) * t)
    # H[(a,i),(b,j)] = (1/(nT²)) Σ_n (p_a δ_ab − p_a p_b) x_i x_j; (Hg)_{a,i} = Σ_{b,j} H g_{b,j}
    v = x @ grad.T  # (n, 3): Σ_j g_{b,j} x_j
    hv = p * v - p * (p * v).sum(1, keepdim=True)
    hg = hv.T @ x / (len(y) * t * t)
    assert torch.allclose(s["weight"], -w * hg, atol=1e-14)


def test_exponential_schedule_matches_spec():
    counts = exponential_counts(1_000_000, 100_000, 10)
    expected = [0.7943, 0.6310, 0.5012, 0.3981, 0.3162, 0.2512, 0.1995, 0.1585, 0.1259, 0.1]
    assert [c / 1e6 for c in counts] == pytest.approx(expected, abs=1e-4)
    c100 = exponential_counts(10_000_000, 1_000_000, 100)
    assert c100[0] / 1e7 == pytest.approx(0.97724, abs=1e-5) and c100[49] / 1e7 == pytest.approx(0.31623, abs=1e-5)


def test_global_topk_exact_count_and_scale_invariance():
    scores = {"a": torch.tensor([[3.0, 1.0], [1.0, 0.5]]), "b": torch.tensor([1.0, 2.0, 1.0])}
    masks = global_topk(scores, 4)
    assert sum(int(m.sum()) for m in masks.values()) == 4
    assert masks["a"].tolist() == [[True, True], [True, False]] and masks["b"].tolist() == [False, True, False]
    scaled = global_topk({n: 7.0 * s for n, s in scores.items()}, 4)
    assert all(scaled[n].equal(masks[n]) for n in masks)


def _steps(setup, n=3):
    from sift_train.data import prepare

    for x, y, gen in list(setup.batches.epoch(0))[:n]:
        setup.optimizer.zero_grad()
        nn.functional.cross_entropy(setup.model(prepare(x, setup.data, True, gen)), y).backward()
        setup.optimizer.step()


@pytest.mark.parametrize("method", ["snip", "grasp", "force", "synflow"])
def test_pai_keeps_exact_global_count_and_zero_inactive(method):
    from dataclasses import replace

    from sift_train.config import make_config
    from sift_train.train import build

    cfg = make_config("digits", dataset="synthetic", model="mlp", family="parallel", sparsity=0.5, method=method,
                      epochs=1, batch_size=64)
    planned = sum(build(replace(cfg, method="static")).sparse.targets.values())
    setup = build(cfg)
    before = {n: m.clone() for n, m in setup.sparse.masking.masks.items()}
    assert sum(int(m.sum()) for m in before.values()) == planned
    _steps(setup)
    for n, p in setup.sparse.masking.params.items():
        mask = setup.sparse.masking.masks[n]
        assert mask.equal(before[n])  # static after scoring
        assert bool((p.detach()[~mask] == 0).all())
