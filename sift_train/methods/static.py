"""Static sparsity: the initial masks never change (sparse-ift.md §2.4)."""
from __future__ import annotations

from .base import MaskMethod


class Static(MaskMethod):
    name = "static"
    dynamic = False

    def update_one(self, weight, grad, mask, drop_fraction, target, generator):
        return mask
