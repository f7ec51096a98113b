"""Per-tensor sparsity distributions: ``uniform`` (the paper's) and ``erk`` (Erdős–Rényi-Kernel).

Both take ``{name: shape}`` and the overall sparsity ``s`` of the sparse tensors and return
``{name: s_l}``.
"""
from __future__ import annotations

import math

from .widths import check_sparsity

DISTRIBUTIONS = ("uniform", "erk")


def uniform(shapes: dict[str, tuple[int, ...]], sparsity: float) -> dict[str, float]:
    """Every sparse tensor gets the same sparsity (sparse-ift.md §2.3, ``STATIC:183-193``)."""
    check_sparsity(sparsity, "uniform")
    return {name: float(sparsity) for name in shapes}


def erk(
    shapes: dict[str, tuple[int, ...]], sparsity: float, power_scale: float = 1.0
) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities with the dense-layer capacity loop.

    Density of tensor l is ``eps * (sum(shape_l) / prod(shape_l)) ** power_scale``, with ``eps`` chosen
    so that the total number of active weights equals ``(1 - s) * sum(numel)``. A tensor whose density
    would exceed 1 is made dense and ``eps`` is solved again over the others, until none exceeds 1
    (google-research/rigl ``sparse_utils.get_sparsities_erdos_renyi``, erdos_renyi_kernel=True).
    """
    check_sparsity(sparsity, "erk")
    dense: set[str] = set()
    while True:
        rhs, divisor, raw = 0.0, 0.0, {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name in dense:
                rhs -= n * sparsity
            else:
                rhs += n * (1.0 - sparsity)
                raw[name] = (sum(shape) / n) ** power_scale
                divisor += raw[name] * n
        if not raw:
            raise ValueError(f"erk: sparsity {sparsity} cannot be reached with every tensor dense")
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps <= 1.0:
            break
        dense.update(name for name, r in raw.items() if r == max_raw)
    return {name: 0.0 if name in dense else 1.0 - eps * raw[name] for name in shapes}


def distribute(
    name: str, shapes: dict[str, tuple[int, ...]], sparsity: float
) -> dict[str, float]:
    if name == "uniform":
        return uniform(shapes, sparsity)
    if name == "erk":
        return erk(shapes, sparsity)
    raise ValueError(f"unknown sparsity distribution {name!r}; expected one of {list(DISTRIBUTIONS)}")
