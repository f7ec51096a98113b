"""RigL (Evci et al. 2020): drop by |w|, grow by |dense gradient| (sparse-ift.md §2.5, ``RIGL:194-232``)."""
from __future__ import annotations

import torch

from .base import DropAndGrow


class RigL(DropAndGrow):
    name = "rigl"
    needs_dense_grad = True

    def grow_scores(self, weight, grad, kept, generator):
        """``|dL/dW|`` of the update step's mini-batch, before masking and weight decay."""
        if grad is None:
            return torch.zeros_like(weight)
        return grad.abs()
