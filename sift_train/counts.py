"""The one rule for how many entries of a sparse tensor stay active at a sparsity ``s``.

:func:`active_count` is ``floor((1 - s) * numel)`` (spec ``sparse-ift.md`` §2.5, §5), read the two ways
every size rule of :mod:`sift_train.widths` is read:

* ``variant="paper"``: exactly, on the decimal value ``s`` stands for (0.8 means 4/5). ``1 - 0.8`` in
  floats is 0.19999999999999996, so a float product lands just below an exact integer (767.9999... for
  numel = 3840); the exact rule gives 768, and unlike a fixed slack (``+ 1e-9``) it stays exact at any
  numel.
* ``variant="official"``: the released code's float expression ``int((1 - s) * numel)`` (cbsparse RigL's
  grow count, spec §2.5 step 3, and the spec §5 table, whose reference numbers it reproduces): 767 for
  s = 0.8, numel = 3840.

Every count in ``sift_train`` (initial masks, RigL/SET targets, Iso-FLOP plans, accounting, and the
density schedules of GraNet and Spartan through :func:`count_at_density`) comes from this module.
"""
from __future__ import annotations

import math
from fractions import Fraction


def exact_decimal(s: float) -> Fraction:
    """``s`` as the decimal the user typed (0.9 -> 9/10): the shortest decimal that reads back as the
    same float. Monotone in ``s``, so rules built on it stay monotone."""
    return Fraction(repr(float(s)))


def active_count(numel: int, sparsity: float, variant: str = "paper") -> int:
    """Active entries of a tensor of ``numel`` entries at ``sparsity`` (``0 <= sparsity <= 1``).

    paper: ``floor((1 - s) * numel)`` in exact rational arithmetic (768 at s = 0.8, numel = 3840; 115
    at s = 0.9, numel = 1152, spec §2.5). official: ``int((1 - s) * numel)`` in floats (767 and 115).
    """
    if variant == "official":
        return int((1 - sparsity) * numel)
    return math.floor((1 - exact_decimal(sparsity)) * int(numel))


def count_at_density(numel: int, density: float) -> int:
    """The same rule for a density ``d = 1 - s``: ``floor(d * numel)`` exactly on the decimal ``d``
    (equal to ``active_count(numel, s)`` whenever ``d`` and ``s`` are decimals adding up to 1)."""
    return math.floor(exact_decimal(density) * int(numel))
