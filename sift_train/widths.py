"""Size rules of the Sparse-IFT family: widths, branch counts and ranks from the one number ``s``.

Every rule has two readings (spec ``sparse-ift.md`` §1.0, §6.1):

* ``variant="official"`` reproduces the released code (CerebrasResearch/Sparse-IFT@487c284) literally,
  float quirks included;
* ``variant="paper"`` follows the paper's Iso-FLOP equalities (§2.3) with exact rational arithmetic and
  the rounding stated in each docstring; whatever rounding leaves over is absorbed by the Iso-FLOP mask
  search (:mod:`sift_train.isoflop`).
"""
from __future__ import annotations

import math
from fractions import Fraction

from .counts import exact_decimal

FAMILIES = ("dense", "wide", "parallel", "factorized", "doped")
VARIANTS = ("paper", "official")


def check_sparsity(s: float, where: str = "sparsity") -> float:
    """Return ``float(s)`` if ``0 <= s < 1``, else raise ``ValueError`` naming ``where``."""
    try:
        value = float(s)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: sparsity must be a number in [0, 1), got {s!r}") from None
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise ValueError(f"{where}: sparsity must be in [0, 1), got {s!r}")
    return value


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")
    return family


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    return variant


def wide_width(width: int, s: float, variant: str = "paper") -> int:
    """Sparse Wide width of a layer whose dense width is ``width``.

    official: ``int(width * sqrt(round(1/(1-s))))`` (R18:838-841, MAIN:463) -> 64 becomes 90/128/202 at
    s = 0.5/0.75/0.9. paper: ``round(width * k_sw)`` with ``k_sw = sqrt(1/(1-s))`` (paper §2.3), Python's
    round (half to even) -> 91/128/202.
    """
    k = wide_multiplier(s, variant)
    return int(width * k) if variant == "official" else round(width * k)


def parallel_branches(s: float, variant: str = "paper") -> int:
    """Sparse Parallel branch count ``K = round(1/(1-s))`` (R18:821-824; paper K = 1/(1-s)).

    Both variants round to the nearest integer (2/4/10 at s = 0.5/0.75/0.9); the paper variant uses the
    exact decimal value of ``s``.
    """
    s = check_sparsity(s)
    if variant == "official":
        return round(1 / (1 - s))
    return max(1, round(1 / (1 - exact_decimal(s))))


def factorized_rank(d_in: int, d_out: int, s: float, variant: str = "paper") -> int:
    """Sparse Factorized hidden width ``d_h = D_in*D_out / ((D_in+D_out)(1-s))`` (spec §1.0).

    For a k x k conv ``D_in = k*k*c_in``. official: ``math.ceil`` evaluated in floats exactly as
    R18:231-243 does (577 instead of 576 at s = 0.9). paper: nearest integer of the exact rational value.
    """
    s = check_sparsity(s)
    if variant == "official":
        return math.ceil((d_in * d_out) / ((1 - s) * (d_in + d_out)))
    return max(1, round(Fraction(d_in * d_out, d_in + d_out) / (1 - exact_decimal(s))))


def doped_rank(d_in: int, d_out: int, s: float, variant: str = "paper") -> int:
    """Sparse Doped rank ``r = s*D_in*D_out / (D_in+D_out)`` (spec §1.0), rounded down.

    official: ``math.floor`` in floats (R18:60-66); paper: floor of the exact rational value (the dense
    low-rank term then never exceeds its share of the budget). ``s = 0`` gives rank 0: no low-rank term.
    """
    s = check_sparsity(s)
    if variant == "official":
        return math.floor(s * d_in * d_out / (d_in + d_out))
    return math.floor(exact_decimal(s) * Fraction(d_in * d_out, d_in + d_out))


def wide_multiplier(s: float, variant: str = "paper") -> float:
    """Sparse Wide width multiplier ``k_sw``: paper ``sqrt(1/(1-s))`` (§2.3), official
    ``sqrt(round(1/(1-s)))`` (MAIN:463)."""
    s = check_sparsity(s)
    if variant == "official":
        return math.sqrt(round(1 / (1 - s)))
    return math.sqrt(1 / (1 - exact_decimal(s)))


def transformer_widths(d_model: int, n_heads: int, d_ff: int, s: float) -> tuple[int, int]:
    """Sparse Wide ``(d_model', d_ff')`` of a transformer at sparsity ``s`` (paper §5, Table 14):
    :func:`scaled_transformer_widths` with ``k = sqrt(1/(1-s))``."""
    s = check_sparsity(s)
    return scaled_transformer_widths(d_model, n_heads, d_ff, math.sqrt(1 / (1 - s)))


def scaled_transformer_widths(d_model: int, n_heads: int, d_ff: int, k: float) -> tuple[int, int]:
    """``(d_model', d_ff')`` of a transformer widened by ``k``.

    ``d_model' = n_heads * ceil(d_model * k / n_heads)`` (rounded up to a multiple of the head
    count, so heads stay equal-sized) and ``d_ff' = int(d_ff * k)``. Reproduces GPT-3 Small (768, 12
    heads, 3072): 1092 / 4344 at k = sqrt(2) (50 %), 1536 / 6144 at k = 2 (75 %). The paper does not
    state its rounding; this is the simplest rule matching both rows (spec §7.1).
    """
    return n_heads * math.ceil(d_model * k / n_heads), int(d_ff * k)
