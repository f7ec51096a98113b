"""Spartan (Tai, Tian, Lim, NeurIPS 2022): soft top-k masking by regularised optimal transport with
dual-averaging updates (spec methods.md §1). Reimplemented from the paper's description and the spec;
no reference code is used.

Spartan is a reparametrisation, not a drop/grow criterion (§1.11): each sparse Conv2d/Linear weight
``W`` runs its forward with ``W ⊙ m ⊙ h``, where

* ``m`` = :func:`~sift_train.methods.soft_topk` of the block values ``v = Σ_block |W|`` (costs: block
  numel, times the output positions with ``cost_model="flops"``), recomputed after every optimizer
  step from the updated weights, with autograd history (the backward reaches ``W`` through ``m``);
* ``h`` = the hard knapsack mask (:func:`knapsack_keep`: the prefix of entries by ``v/c`` that fits the
  budget; sift's exact count), straight-through in the backward (§1.4): ``∂L/∂W = G ⊙ m + ∂L/∂W|_m``.

Every weight, kept or not, gets gradient and optimizer updates until the freeze (dual averaging), so the
stored weights stay **dense** -- the one method whose inactive weights are not zero in storage. At step
``T_f`` the mask freezes to ``m_f = m ⊙ h`` (soft values kept) and fine-tuning trains ``W ⊙ m_f``
(pruned entries get zero gradient). Snapshots store ``h`` and the weights the forward uses,
``W ⊙ m ⊙ h`` (§5).

Schedules (§1.5): density budget linear from 1 to the target over the first ``warmup_frac`` of steps,
sharpness ``β`` from ``beta_init`` to ``beta_target·√(b₀b₁)`` until ``T_f = T − int(finetune_frac·T)``.
Budgets (§1.6): ``global`` (one solve over all entries), ``uniform`` (same fraction per tensor) or
``erk`` (per-tensor fractions of :func:`sift_train.distributions.erk`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..counts import count_at_density
from ..distributions import erk
from ..masking import MASK_SUFFIX
from .base import MaskMethod
from .soft_topk import knapsack_keep, soft_topk

SOFT_SUFFIX = "_soft_mask"


@dataclass(frozen=True)
class SpartanSchedule:
    """Budget and sharpness schedules (§1.5; defaults ``SP:38-83``, β_T = 10 of the ResNet-50 runs)."""

    total: int
    density: float  # cost_frac_target
    beta_target: float = 10.0
    block_numel: int = 1
    warmup_frac: float = 0.2
    finetune_frac: float = 0.2
    beta_init: float = 1.0
    density_init: float = 1.0
    annealing: str = "linear"

    @property
    def warmup_end(self) -> int:
        return int(self.warmup_frac * self.total)

    @property
    def freeze_step(self) -> int:
        return self.total - int(self.finetune_frac * self.total)

    def _ramp(self, t: int, t1: int) -> float:
        r = 1.0 if t1 <= 0 else min(max(t / t1, 0.0), 1.0)
        return 0.5 * (1 - math.cos(math.pi * r)) if self.annealing == "cosine" else r

    def density_at(self, t: int) -> float:
        return self.density_init + (self.density - self.density_init) * self._ramp(t, self.warmup_end)

    def beta_at(self, t: int) -> float:
        final = self.beta_target * math.sqrt(self.block_numel)
        return self.beta_init + (final - self.beta_init) * self._ramp(t, self.freeze_step)


class Spartan(MaskMethod):
    """Registry entry: ``--method spartan`` builds a :class:`SpartanTraining` (not a drop/grow method)."""

    name = "spartan"

    def update_one(self, weight, grad, mask, drop_fraction, target, generator):
        raise TypeError("spartan is trained by SpartanTraining, not by mask updates")


def _block_sum(w: torch.Tensor, b0: int, b1: int) -> torch.Tensor:
    o, i = w.shape[:2]
    return w.reshape(o // b0, b0, i // b1, b1, *w.shape[2:]).sum((1, 3))


def _expand(m: torch.Tensor, b0: int, b1: int) -> torch.Tensor:
    return m.repeat_interleave(b0, 0).repeat_interleave(b1, 1)


class _Masked:
    """The state of one sparse weight: block size, entry costs, current soft/hard block masks."""

    def __init__(self, module: nn.Module, weight: nn.Parameter, blocks: tuple[int, int], positions: int,
                 cost_model: str):
        self.module, self.weight, (self.b0, self.b1) = module, weight, blocks
        shape = _block_sum(weight.detach(), *blocks).shape
        per = blocks[0] * blocks[1] * (positions if cost_model == "flops" else 1)
        self.costs = torch.full(shape, float(per), device=weight.device)
        self.soft: torch.Tensor | None = None  # block soft mask (with graph while exploring)
        self.hard = torch.ones(shape, dtype=torch.bool, device=weight.device)

    def values(self) -> torch.Tensor:
        return _block_sum(self.weight.abs(), self.b0, self.b1)

    def effective(self, frozen: bool) -> torch.Tensor:
        w = self.weight
        if self.soft is None:
            return w
        m = _expand(self.soft, self.b0, self.b1).to(w.dtype)
        if frozen:
            return w * m
        wm = w * m
        h = _expand(self.hard, self.b0, self.b1).to(w.dtype)
        return wm + (wm * h - wm).detach()  # forward W m h; h straight-through (§1.4)


class SpartanTraining:
    """Spartan on ``model``'s sparse tensors, driven by ``optimizer``'s step hooks (one backward per
    step). Same surface as :class:`sift_train.sparse_training.SparseTraining` for the training loop:
    ``step``, ``last_update_step``, ``targets``, ``masking.masks`` / ``.params`` / ``.active_counts()``,
    ``snapshot_weights()``, ``state_dict()``. ``record_every``: which steps count as mask updates for
    snapshots (the mask changes every step)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: dict[str, nn.Parameter],
                 schedule: SpartanSchedule, *, budget: str = "global", block_dims: tuple[int, int] = (1, 1),
                 cost_model: str = "sparsity", positions: dict[str, int] | None = None,
                 record_every: int = 100, max_iters: int = 100, tol: float = 0.01,
                 generator: torch.Generator | None = None):
        self.model, self.optimizer, self.params, self.schedule = model, optimizer, params, schedule
        self.generator = generator or torch.Generator()  # unused by Spartan; kept in checkpoints like RigL's
        self.budget, self.record_every, self.max_iters, self.tol = budget, record_every, max_iters, tol
        self.step, self.last_update_step, self.frozen = 0, None, False
        self.layers: dict[str, _Masked] = {}
        for name, p in params.items():
            prefix, _, attr = name.rpartition(".")
            module = model.get_submodule(prefix)
            if attr != "weight" or not isinstance(module, (nn.Linear, nn.Conv2d)):
                raise ValueError(f"{name}: spartan masks Conv2d/Linear weights only")
            if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
                raise ValueError(f"{name}: spartan supports padding_mode='zeros' only")
            blocks = tuple(block_dims)
            if p.shape[0] % blocks[0] or p.shape[1] % blocks[1]:
                warnings.warn(f"{name}: shape {tuple(p.shape)} not divisible by blocks {blocks}; unstructured")
                blocks = (1, 1)
            self.layers[name] = _Masked(module, p, blocks, (positions or {}).get(name, 1), cost_model)
            module.register_buffer(attr + MASK_SUFFIX, torch.ones_like(p, dtype=torch.bool))
            module.register_buffer(attr + SOFT_SUFFIX, torch.ones(self.layers[name].hard.shape, device=p.device))
            module.forward = self._forward(name, module)
        shapes = {n: tuple(lay.hard.shape) for n, lay in self.layers.items()}
        self.fractions = erk(shapes, 1 - schedule.density) if budget == "erk" else None
        self._planned = {n: count_at_density(p.numel(), schedule.density) for n, p in params.items()}
        self.masking = self  # the loop reads .masking.masks / .params / .active_counts()
        optimizer.register_step_post_hook(lambda opt, args, kwargs: self._after_step())

    # ---------------------------------------------------------------- forward
    def _forward(self, name: str, module: nn.Module):
        lay = self.layers[name]

        def forward(x):
            w = lay.effective(self.frozen)
            if isinstance(module, nn.Linear):
                return F.linear(x, w, module.bias)
            return F.conv2d(x, w, module.bias, module.stride, module.padding, module.dilation, module.groups)

        return forward

    # ---------------------------------------------------------------- masks
    def recompute(self, density: float, beta: float) -> None:
        """Soft masks (with autograd history) and hard masks for budget fraction ``density``."""
        with torch.enable_grad():
            groups = [list(self.layers)] if self.budget == "global" else [[n] for n in self.layers]
            for names in groups:
                frac = density if self.fractions is None else density_of(self.fractions, names[0], density,
                                                                         self.schedule.density)
                values = [self.layers[n].values() for n in names]
                costs = torch.cat([self.layers[n].costs.flatten() for n in names])
                v = torch.cat([x.flatten() for x in values])
                budget = frac * float(costs.sum())
                if frac >= 1.0:
                    m, h = torch.ones_like(v), torch.ones_like(v, dtype=torch.bool)
                elif frac <= 0.0:
                    m, h = torch.zeros_like(v), torch.zeros_like(v, dtype=torch.bool)
                else:
                    m = soft_topk(v, costs.to(v.dtype), budget, beta, max_iters=self.max_iters, tol=self.tol)
                    h = knapsack_keep(v.detach(), costs, budget)
                start = 0
                for n, x in zip(names, values):
                    lay, k = self.layers[n], x.numel()
                    lay.soft = m[start:start + k].reshape(x.shape)
                    lay.hard = h[start:start + k].reshape(x.shape)
                    start += k
        self._sync_buffers()

    def _sync_buffers(self) -> None:
        with torch.no_grad():
            for n, lay in self.layers.items():
                getattr(lay.module, "weight" + MASK_SUFFIX).copy_(_expand(lay.hard, lay.b0, lay.b1))
                if lay.soft is not None:
                    getattr(lay.module, "weight" + SOFT_SUFFIX).copy_(lay.soft.detach())

    def freeze(self) -> None:
        """``m_f = m ⊙ h`` (soft values kept, §1.5); from now on the forward is ``W ⊙ m_f``."""
        for lay in self.layers.values():
            lay.soft = (lay.soft.detach() * lay.hard) if lay.soft is not None else lay.hard.float()
        self.frozen = True
        self._sync_buffers()

    def _after_step(self) -> None:
        self.step += 1
        t, s = self.step, self.schedule
        if self.frozen:
            return
        self.recompute(s.density_at(t), s.beta_at(t))
        if t >= s.freeze_step:
            self.freeze()
        if t % self.record_every == 0 or self.frozen:
            self.last_update_step = t

    # ---------------------------------------------------------------- reading
    @property
    def targets(self) -> dict[str, int]:
        """Active entries per tensor: the planned counts before the first step, then the masks' own
        (counted when asked, not after every step: each count is a device sync)."""
        return self._planned if self.step == 0 else self.active_counts()

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return {n: getattr(lay.module, "weight" + MASK_SUFFIX) for n, lay in self.layers.items()}

    def active_counts(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self.masks.items()}

    @torch.no_grad()
    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        """The weights the forward uses: ``W ⊙ m ⊙ h`` (``W ⊙ m_f`` after the freeze)."""
        return {n: lay.effective(self.frozen).detach() for n, lay in self.layers.items()}

    def state_dict(self) -> dict:
        """Step and freeze state; the masks are buffers of the model (``weight_mask``, ``weight_soft_mask``)."""
        return {"step": self.step, "last_update_step": self.last_update_step, "frozen": self.frozen,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Call after ``model.load_state_dict``: exploring masks are recomputed from the loaded weights
        (a deterministic function of them), frozen ones read from the soft-mask buffers."""
        self.step, self.last_update_step = int(state["step"]), state["last_update_step"]
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self.frozen = False
        if bool(state["frozen"]):
            for lay in self.layers.values():
                lay.soft = getattr(lay.module, "weight" + SOFT_SUFFIX).clone()
                lay.hard = lay.soft != 0
            self.frozen = True
        elif self.step > 0:
            self.recompute(self.schedule.density_at(self.step), self.schedule.beta_at(self.step))


def density_of(fractions: dict[str, float], name: str, density: float, target: float) -> float:
    """ERK per-tensor budget: the tensor's ERK density at the target, scaled along the ramp."""
    d_target = 1.0 - fractions[name]
    return 1.0 - (1.0 - density) * (1.0 - d_target) / (1.0 - target) if target < 1 else density
