"""One optimizer step over a global batch: micro-batches (``accumulate``), DDP gradient
synchronisation on the last one only, autocast and loss scaling.

The loss of each micro-batch is weighted so that the accumulated (and, under DDP, rank-averaged)
gradient is the gradient of the mean loss over the whole global batch of ``n`` samples:
``loss_i · n_i · world_size / n``. With one process and no accumulation the factor is exactly 1.
Mask updates are counted in optimizer steps (sparse-ift.md §2.1: ``num_updates = steps // grad_accum``).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .distributed import Dist
from .precision import Precision


class StepRunner:
    """``step(x, y, n)`` → ``(loss sum, correct count)`` of this rank's shard, as device tensors
    (no host synchronisation per step)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision,
                 dist: Dist, accumulate: int = 1):
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.dist, self.accumulate = dist, accumulate

    def step(self, x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        parts = list(zip(torch.tensor_split(x, self.accumulate), torch.tensor_split(y, self.accumulate)))
        loss_sum = torch.zeros((), device=y.device)
        correct = torch.zeros((), dtype=torch.int64, device=y.device)
        for i, (xm, ym) in enumerate(parts):
            last = i == len(parts) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with self.precision.autocast():
                    out = self.model(xm)
                loss = nn.functional.cross_entropy(out.float(), ym)
                self.precision.backward(loss * (len(ym) * self.dist.world_size / n))
            loss_sum += loss.detach() * len(ym)
            correct += (out.detach().argmax(1) == ym).sum()
        self.precision.step(self.optimizer)
        return loss_sum, correct
