"""Soft top-k by regularised optimal transport (Spartan, Tai et al. 2022; spec methods.md §1.2-1.3).

Pure functions on 1-D tensors of entries (values ``v``, costs ``c``, budget ``B``):

* :func:`knapsack_keep` -- the hard mask ``h``: the longest prefix of the entries sorted by unit value
  ``u = v / c`` (descending, ties by index) whose cumulative cost is ``<= B`` (sift's exact-count rule;
  Spartan's mode keeps ``ceil(B)`` entries for unit costs, its other modes one fewer, §1.2).
* :func:`soft_topk` -- the soft mask ``m* = argmax_{m in [0,1]^E, sum c m = B} sum v m + (1/β) sum c H(m)``,
  i.e. ``m_e = σ(β(u_e − t) + μ)``, by the two-sink Sinkhorn iteration of §1.3, with the implicit
  gradient of the fixed point as its backward (a :class:`torch.autograd.Function`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def knapsack_keep(values: torch.Tensor, costs: torch.Tensor, budget: float) -> torch.Tensor:
    """Bool mask of the greedy knapsack prefix: entries by ``v / c`` descending (stable: lower index
    first), kept while the cumulative cost stays ``<= budget`` (1e-9 relative slack for rounding)."""
    u = (values / costs).flatten()
    order = torch.sort(-u.double(), stable=True).indices
    cum = torch.cumsum(costs.flatten().double()[order], 0)
    n_keep = int((cum <= budget * (1 + 1e-9) + 1e-12).sum())
    keep = torch.zeros(u.numel(), dtype=torch.bool, device=u.device)
    keep[order[:n_keep]] = True
    return keep.reshape(values.shape)


def _threshold(u: torch.Tensor, costs: torch.Tensor, budget: float) -> torch.Tensor:
    """``t = u_(j*)``, ``j*`` = first sorted index with cumulative cost ``>= B`` (§1.2, left bisection)."""
    su, order = torch.sort(u, descending=True, stable=True)
    cum = torch.cumsum(costs[order], 0)
    j = int(torch.searchsorted(cum, torch.tensor([budget], dtype=cum.dtype, device=cum.device)))
    return su[min(j, su.numel() - 1)]


def sinkhorn(values: torch.Tensor, costs: torch.Tensor, budget: float, beta: float, *,
             max_iters: int = 100, tol: float = 0.01) -> tuple[torch.Tensor, int]:
    """Soft mask ``m`` of §1.3 and the 0-based index of the last sweep. Inputs are 1-D, already in the
    solve dtype (float32 or float64); no autograd."""
    u = values / costs
    z = beta * (u - _threshold(u, costs, budget))
    log_b, log_c = torch.log(torch.as_tensor(budget, dtype=u.dtype, device=u.device)), torch.log(costs)
    mu = torch.zeros((), dtype=u.dtype, device=u.device)
    nu = log_c - F.softplus(z + mu)
    m = torch.sigmoid(z + mu)
    j_prev = float((m * values).sum())
    s = 0
    for s in range(max_iters):
        mu = log_b - torch.logsumexp(z + nu, 0)  # column (budget) projection
        nu = log_c - F.softplus(z + mu)  # row projections: each source splits its mass exactly
        m = torch.sigmoid(z + mu)
        j = float((m * values).sum())
        if abs(j - j_prev) <= tol * abs(j_prev):
            break
        j_prev = j
    return m, s


class _SoftTopK(torch.autograd.Function):
    """Forward: :func:`sinkhorn`. Backward (implicit differentiation of ``m = σ(βu + μ)``,
    ``Σ c m = B``): ``∂L/∂v_j = β m_j(1−m_j) [g_j/c_j − Σ_i g_i m_i(1−m_i) / (B − Σ_i c_i m_i²)]``
    (§1.3). ``B − Σ c m²`` equals ``Σ c m(1−m)`` when the budget holds exactly; with the loose default
    tolerance both are approximations and sift keeps Spartan's form (its one-layer check, §1.4)."""

    @staticmethod
    def forward(ctx, values, costs, budget, beta, max_iters, tol):
        m, _ = sinkhorn(values, costs, budget, beta, max_iters=max_iters, tol=tol)
        ctx.save_for_backward(m, costs)
        ctx.beta, ctx.budget = beta, budget
        return m

    @staticmethod
    def backward(ctx, g):
        m, costs = ctx.saved_tensors
        w = m * (1 - m)
        denom = (ctx.budget - (costs * m * m).sum()).clamp_min(torch.finfo(m.dtype).tiny)
        grad_v = ctx.beta * w * (g / costs - (g * w).sum() / denom)
        return grad_v, None, None, None, None, None


def soft_topk(values: torch.Tensor, costs: torch.Tensor | float, budget: float, beta: float, *,
              max_iters: int = 100, tol: float = 0.01) -> torch.Tensor:
    """Soft top-k mask of ``values`` under ``budget`` (Spartan's regularised transport, spec §1.3).

    ``m_e = σ(β(u_e − t) + μ)``, ``u = values / costs``, with the scalar ``μ`` found by the Sinkhorn
    iteration (stopped when the objective ``Σ m v`` changes by ``<= tol`` relative, or after
    ``max_iters`` sweeps) so that ``Σ c m ≈ budget``; ``t`` is the hard knapsack threshold.

    Parameters: ``values`` (any shape, >= 0 in Spartan's use), ``costs`` (same shape or a scalar, > 0),
    ``budget`` in ``(0, Σ c)``, ``beta > 0`` (sharpness). Solved in float64 for float64 input and in
    float32 otherwise; returns a tensor of ``values``' shape in that dtype, differentiable w.r.t.
    ``values`` by the implicit gradient of the fixed point.

    References: Tai, Tian, Lim, "Spartan: Differentiable Sparsity via Regularized Transportation",
    NeurIPS 2022 (algorithm restated from the paper and spec, not from its code).
    """
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    v = values.to(dtype).flatten()
    c = torch.as_tensor(costs, dtype=dtype, device=v.device).expand_as(v.reshape(values.shape)).flatten()
    if v.numel() == 0:
        raise ValueError("soft_topk: empty values")
    if not bool((c > 0).all()):
        raise ValueError("soft_topk: costs must be > 0")
    total = float(c.sum())
    if not 0.0 < budget < total:
        raise ValueError(f"soft_topk: budget must be in (0, sum(costs) = {total:g}), got {budget}")
    if beta <= 0:
        raise ValueError(f"soft_topk: beta must be > 0, got {beta}")
    return _SoftTopK.apply(v, c.contiguous(), float(budget), float(beta), int(max_iters),
                           float(tol)).reshape(values.shape)
