"""The mask-update interface: ``(weights, grads, masks, drop fraction) -> new masks``.

A method only decides *which* entries to drop and grow (google-research/rigl ``sparse_optimizers``
style); *when* and *how much* is :class:`sift_train.schedule.UpdateSchedule`, and enforcing masks on
weights, gradients and optimizer state is :class:`sift_train.masking.Masking`. A new method (GraNet,
pruning at init, Spartan, ...) subclasses :class:`MaskMethod` and registers in ``methods/__init__.py``.
"""
from __future__ import annotations

from typing import ClassVar

import torch


class MaskMethod:
    """Base class. ``dynamic=False`` methods are never asked to update."""

    name: ClassVar[str]
    dynamic: ClassVar[bool] = True
    needs_dense_grad: ClassVar[bool] = False

    def prepare(self, model, masks: dict[str, torch.Tensor], targets: dict[str, int], schedule, *,
                total_steps: int, generator: torch.Generator, data=None):
        """Once, before training: the method's own initial ``(masks, targets, schedule)`` from the
        default random ones (pruning at init scores ``model`` on ``data``; GraNet starts dense on its
        cubic schedule). The default keeps them."""
        return masks, targets, schedule

    def update_masks(
        self,
        weights: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor | None],
        masks: dict[str, torch.Tensor],
        drop_fraction: float,
        targets: dict[str, int],
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """New masks; ``targets[name]`` is the number of active entries each tensor must end with."""
        return {
            name: self.update_one(weights[name], grads.get(name), masks[name], drop_fraction,
                                  targets[name], generator)
            for name in masks
        }

    def update_one(self, weight, grad, mask, drop_fraction, target, generator) -> torch.Tensor:
        raise NotImplementedError


class DropAndGrow(MaskMethod):
    """Per-tensor drop by weight magnitude, then grow by :meth:`grow_scores` (sparse-ift.md §2.5)."""

    def update_one(self, weight, grad, mask, drop_fraction, target, generator) -> torch.Tensor:
        kept = drop_by_magnitude(weight, mask, drop_fraction)
        n_grow = max(0, target - int(kept.sum()))
        return grow_top(kept, self.grow_scores(weight, grad, kept, generator), n_grow)

    def grow_scores(self, weight, grad, kept, generator) -> torch.Tensor:
        raise NotImplementedError


def drop_by_magnitude(weight: torch.Tensor, mask: torch.Tensor, drop_fraction: float) -> torch.Tensor:
    """Keep the ``n - int(α n)`` active entries of largest ``|w|`` (``n`` = active count;
    ``DYN:294-311``). Only active entries compete, so an active weight that is exactly 0 is never
    swapped for an inactive position (the cbsparse tie case of sparse-ift.md §2.5 step 2)."""
    n = int(mask.sum())
    return keep_largest_active(weight, mask, n - int(drop_fraction * n))


def keep_largest_active(weight: torch.Tensor, mask: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Bool mask of the ``n_keep`` active entries of ``mask`` with the largest ``|w|`` (inactive
    entries never compete)."""
    score = weight.detach().abs().flatten().masked_fill(~mask.flatten(), -1.0)
    kept = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
    if n_keep > 0:
        kept[torch.topk(score, n_keep, sorted=False).indices] = True
    return kept.reshape(mask.shape)


def grow_top(kept: torch.Tensor, score: torch.Tensor, n_grow: int) -> torch.Tensor:
    """Activate the ``n_grow`` entries inactive in ``kept`` with the largest ``score`` (``DYN:313-327``);
    active entries never compete, so the count after growing is exactly ``count(kept) + n_grow``."""
    n_grow = min(n_grow, int((~kept).sum()))
    new = kept.flatten().clone()
    if n_grow > 0:
        s = score.detach().flatten().float().masked_fill(new, -float("inf"))
        new[torch.topk(s, n_grow, sorted=False).indices] = True
    return new.reshape(kept.shape)
