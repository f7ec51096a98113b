"""GraNet (Liu et al., NeurIPS 2021): gradual global magnitude pruning + zero-cost neuroregeneration
(spec methods.md §2). The schedule (cubic densities, cosine rate) is
:class:`sift_train.schedule.GraNetSchedule`; this class only decides which entries survive.

At an update step with total target ``K = Σ targets`` below the current active count:

1. **prune** (§2.2): keep the ``K`` active entries of largest ``|w|`` under one global ranking over all
   masked tensors (sift: exact count instead of the code's strict threshold, which keeps ``K − 1``; each
   tensor keeps at least its largest entry, a guard the reference lacks, §2.7);

then at every update step:

2. **regenerate** (§2.3), per tensor: drop the ``⌈r·nnz⌉`` active entries of smallest ``|w|`` and grow
   as many inactive ones (just-dropped included) with the largest dense ``|∂L/∂w|`` of this step's
   mini-batch; each tensor's count is unchanged. Grown weights and their optimizer state start at 0.
"""
from __future__ import annotations

import math

import torch

from ..counts import count_at_density
from .base import MaskMethod, grow_top, keep_largest_active
from .pruning_at_init import global_topk


def regenerate(weight: torch.Tensor, grad: torch.Tensor | None, mask: torch.Tensor, rate: float) -> torch.Tensor:
    """Zero-cost neuroregeneration of one tensor (``GC:537-563``): drop ``⌈rate·nnz⌉`` smallest ``|w|``
    among active entries, regrow as many inactive ones by ``|grad|``."""
    nnz = int(mask.sum())
    q = min(math.ceil(rate * nnz), nnz)
    if q == 0:
        return mask
    kept = keep_largest_active(weight, mask, nnz - q)
    grow = torch.zeros_like(weight) if grad is None else grad.abs()
    return grow_top(kept, grow, q)


def global_magnitude_prune(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Keep the ``k`` active entries of largest ``|w|`` over all tensors; every nonempty tensor keeps its
    largest active entry (§2.7's guard against a global prune emptying a layer)."""
    scores = {}
    for name, w in weights.items():
        s = w.detach().abs().double().masked_fill(~masks[name], -1.0)
        if bool(masks[name].any()):
            flat = s.flatten().clone()
            flat[int(torch.argmax(flat))] = float("inf")
            s = flat.reshape(s.shape)
        scores[name] = s
    return global_topk(scores, k)


class GraNet(MaskMethod):
    """``init_density`` d_i (1: dense-to-sparse) and ``prune_end_fraction`` are used by :meth:`prepare`
    when GraNet runs inside a user's loop; ``python -m sift_train train`` reads them from the config."""

    name = "granet"
    needs_dense_grad = True

    def __init__(self, init_density: float = 1.0, prune_end_fraction: float = 0.5):
        self.init_density, self.prune_end_fraction = init_density, prune_end_fraction

    def prepare(self, model, masks, targets, schedule, *, total_steps, generator, data=None):
        """Final density = the given targets' overall density (no Iso-FLOP search here: see
        :func:`sift_train.training_flops.search_final_density`); start at ``init_density`` (random
        exact-count masks below 1) on the cubic schedule with ``schedule``'s ΔT, rate and end."""
        from ..masking import random_masks
        from ..schedule import GraNetSchedule

        numels = tuple((n, m.numel()) for n, m in masks.items())
        final = sum(targets.values()) / sum(k for _, k in numels)
        regen_end = schedule.end if schedule.end < total_steps else None
        sched = GraNetSchedule(total=total_steps, final_density=min(final, self.init_density),
                               prune_end=int(self.prune_end_fraction * total_steps),
                               init_density=self.init_density, interval=schedule.interval,
                               regen_end=regen_end, drop_fraction=schedule.drop_fraction, numels=numels)
        counts = {n: count_at_density(k, self.init_density) for n, k in numels}
        shapes = {n: tuple(m.shape) for n, m in masks.items()}
        new = random_masks(shapes, {n: 1.0 - self.init_density for n in shapes}, generator, counts=counts)
        return new, counts, sched

    def update_masks(self, weights, grads, masks, drop_fraction, targets, generator):
        k = sum(targets.values())
        if k < sum(int(m.sum()) for m in masks.values()):
            masks = global_magnitude_prune(weights, masks, k)
        return {n: regenerate(weights[n], grads.get(n), masks[n], drop_fraction) for n in masks}
