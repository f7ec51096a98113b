"""Sparse training methods by name: ``static``, ``set``, ``rigl`` (sparse-ift.md §2.4-2.6),
``granet``, ``snip``, ``grasp``, ``force``, ``synflow``, ``spartan`` and N:M patterns (methods.md §1-4)."""
from __future__ import annotations

from .base import DropAndGrow, MaskMethod, drop_by_magnitude, grow_top
from .granet import GraNet
from .nm import nm_mask
from .pruning_at_init import FORCE, SNIP, GraSP, SynFlow
from .rigl import RigL
from .set import SET
from .soft_topk import soft_topk
from .spartan import Spartan
from .static import Static

METHODS: dict[str, type[MaskMethod]] = {
    cls.name: cls for cls in (Static, SET, RigL, GraNet, SNIP, GraSP, FORCE, SynFlow, Spartan)}


def get_method(name: str) -> MaskMethod:
    try:
        return METHODS[name]()
    except KeyError:
        raise ValueError(f"unknown sparse training method {name!r}; expected one of {sorted(METHODS)}") from None


__all__ = ["METHODS", "get_method", "MaskMethod", "DropAndGrow", "drop_by_magnitude", "grow_top",
           "Static", "SET", "RigL", "GraNet", "SNIP", "GraSP", "FORCE", "SynFlow", "Spartan", "soft_topk", "nm_mask"]
