"""SET (Mocanu et al. 2018): drop by |w|, grow uniformly at random (sparse-ift.md §2.6, ``SET:183-213``)."""
from __future__ import annotations

import torch

from .base import DropAndGrow


class SET(DropAndGrow):
    name = "set"

    def grow_scores(self, weight, grad, kept, generator):
        """``U(0, 1)`` per entry, drawn from the run's mask generator on its device (the model's; under
        DDP its state is the same on every rank, so every rank grows the same entries)."""
        return torch.rand(weight.shape, generator=generator, device=generator.device).to(weight.device)
