"""Spartan's soft top-k (spec methods.md §1.2-1.3, §1.12 items 1-3) against closed forms written here."""
import math

import pytest
import torch

from sift_train.methods import soft_topk
from sift_train.methods.soft_topk import knapsack_keep

V = torch.tensor([0.9, 0.7, 0.5, 0.3, 0.1], dtype=torch.float64)


def exact_fixed_point(v, c, budget, beta):
    """m_e = σ(β u_e + μ) with Σ c m = B, μ by bisection (independent of the Sinkhorn code)."""
    u = v / c
    lo, hi = -1e3, 1e3
    for _ in range(300):
        mu = (lo + hi) / 2
        if float((c * torch.sigmoid(beta * u + mu)).sum()) > budget:
            hi = mu
        else:
            lo = mu
    return torch.sigmoid(beta * u + (lo + hi) / 2)


def test_five_element_case_exact_fixed_point():
    m = soft_topk(V, 1.0, 2.0, 10.0, max_iters=10_000, tol=1e-14)
    expected = [0.951953, 0.728366, 0.266265, 0.046813, 0.006603]  # spec §1.3
    assert m.dtype == torch.float64
    assert m.tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(m, exact_fixed_point(V, torch.ones(5, dtype=torch.float64), 2.0, 10.0), atol=1e-9)


def test_five_element_case_default_tolerance():
    m = soft_topk(V, 1.0, 2.0, 10.0)
    assert m.tolist() == pytest.approx([0.946155, 0.703973, 0.243477, 0.041738, 0.005860], abs=1e-6)
    assert float(m.sum()) == pytest.approx(1.941204, abs=1e-6)


def test_float32_input_solves_in_float32_and_keeps_shape():
    m = soft_topk(V.float().reshape(1, 5), 1.0, 2.0, 10.0)
    assert m.dtype == torch.float32 and m.shape == (1, 5)


def test_fixed_point_invariants():
    m = soft_topk(V, 1.0, 2.0, 10.0, max_iters=10_000, tol=1e-14)
    logit = torch.log(m / (1 - m)) - 10.0 * V
    assert float(logit.max() - logit.min()) < 1e-8
    flat = soft_topk(V, 1.0, 2.0, 1e-3, max_iters=10_000, tol=1e-14)
    assert flat.tolist() == pytest.approx([0.4] * 5, abs=1e-3)
    # from μ = 0 the budget is approached monotonically from below (§1.3; slowly for sharp β)
    sums = [float(soft_topk(V, 1.0, 2.0, 100.0, max_iters=k, tol=0.0).sum()) for k in (1, 10, 100, 1000)]
    assert sums == sorted(sums) and sums[-1] < 2.0
    assert float(exact_fixed_point(V, torch.ones(5, dtype=torch.float64), 2.0, 100.0)[2]) == pytest.approx(
        4.5e-5, abs=1e-6)


def test_implicit_gradient_matches_finite_differences():
    v = V.clone().requires_grad_()
    soft_topk(v, 1.0, 2.0, 10.0, max_iters=10_000, tol=1e-14)[0].backward()
    h = 1e-6
    fd = []
    for j in range(5):
        e = torch.zeros(5, dtype=torch.float64)
        e[j] = h
        ones = torch.ones(5, dtype=torch.float64)
        fd.append(float(exact_fixed_point(V + e, ones, 2.0, 10.0)[0]
                        - exact_fixed_point(V - e, ones, 2.0, 10.0)[0]) / (2 * h))
    assert v.grad.tolist() == pytest.approx(fd, abs=1e-6)
    assert v.grad.tolist() == pytest.approx([0.414699, -0.184627, -0.182312, -0.041639, -0.006121], abs=1e-6)


def test_gradient_of_budget_direction_is_zero():
    v = V.clone().requires_grad_()
    c = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0], dtype=torch.float64)
    m = soft_topk(v, c, 3.0, 10.0, max_iters=10_000, tol=1e-12)
    (m * c).sum().backward()
    assert float(v.grad.abs().max()) <= 1e-10


def test_knapsack_keeps_the_prefix_that_fits():
    assert knapsack_keep(V, torch.ones(5, dtype=torch.float64), 2.0).tolist() == [True, True, False, False, False]
    costs = torch.tensor([3.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)  # u = .3, .7, .5, .3, .1
    assert knapsack_keep(V, costs, 2.5).tolist() == [False, True, True, False, False]


def test_bad_budget_is_one_line_error():
    with pytest.raises(ValueError, match="budget"):
        soft_topk(V, 1.0, 5.0, 10.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    from sift_train.methods import nm_mask

    m = soft_topk(V.cuda(), 1.0, 2.0, 10.0)
    assert m.device.type == "cuda" and torch.allclose(m.cpu(), soft_topk(V, 1.0, 2.0, 10.0))
    w = torch.randn(8, 16)
    assert nm_mask(w.cuda(), 2, 4, transposable=True).cpu().equal(nm_mask(w, 2, 4, transposable=True))
