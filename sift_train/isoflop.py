"""Iso-FLOP control: choose the uniform mask sparsity that makes a transformed model cost what the dense
model costs (paper App. A.2; spec ``sparse-ift.md`` §3.3, §6.1).

* ``variant="paper"``: every family (wide, parallel, factorized, doped) is searched so that the whole
  model's 2xMAC FLOPs (dense stem and head included) match the dense model's, to ``rtol`` (default
  1e-6 relative, "0.0001 %" in the paper) where integer active counts allow. FLOPs are a
  non-increasing step function of the mask sparsity, so bisection finds the closest step exactly.
* ``variant="official"``: the released code. Only Sparse Wide is searched, with the code's own binary
  search (MAIN:319-370: ``[0, 0.9999]``, step ``1e-4``, stop within +-0.1 %) on profiler FLOPs against
  the dense profiler budget (1,115,226,800 for CIFAR-100 ResNet-18, LAUNCH:25), each probe seeing the
  expected density ``1 - s`` of Bernoulli masks. Other families train at the nominal ``s``.
* ``family="dense"`` with ``sparsity > 0`` (plain sparse training) trains at the nominal ``s``.

Active entries per sparse tensor are :func:`sift_train.counts.active_count` (``floor((1 - s) * numel)``,
what RigL/SET converge to, spec §5; exact in ``paper``, in floats in ``official``).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .accounting import LayerShape, count_layers, trace
from .counts import active_count
from .models import build_model
from .widths import check_family, check_sparsity, check_variant

OFFICIAL_TOLERANCE = 1e-3  # MAIN:323
OFFICIAL_INCREMENT = 1e-4  # MAIN:319-370
OFFICIAL_HIGH = 0.9999  # MAIN:319-370


@dataclass(frozen=True)
class MaskPlan:
    """The mask sparsity chosen for a model and what it costs."""

    mask_sparsity: float  # uniform sparsity of every sparse tensor
    active: dict[str, int]  # active entries per sparse tensor (names as in sparse_parameters);
    # active_count(numel, mask_sparsity), +-a few where the paper search refined it: use these counts
    flops: int  # 2xMAC forward FLOPs per sample with these counts
    profiler_flops: int
    dense_flops: int  # of the dense model of the same name (2xMAC)
    dense_profiler_flops: int
    searched: bool  # False: nominal sparsity, no Iso-FLOP search

    @property
    def flops_ratio(self) -> float:
        return self.flops / self.dense_flops

    @property
    def rel_error(self) -> float:
        """``|flops / dense_flops - 1|``."""
        return abs(self.flops_ratio - 1)


def _counts_at(shapes: list[LayerShape], s: float, variant: str = "paper") -> dict[str, int]:
    """Active entries of every sparse tensor at the uniform mask sparsity ``s``."""
    return {l.sparse_name: active_count(l.weight_numel, s, variant) for l in shapes if l.sparse_name}


def _flops_of(shapes: list[LayerShape], active: dict[str, int]) -> int:
    return sum(r.flops for r in count_layers(shapes, active))


def _flops_at(shapes: list[LayerShape], s: float) -> int:
    return _flops_of(shapes, _counts_at(shapes, s))


def iso_flop_sparsity(shapes: list[LayerShape], target: int, *, rtol: float = 1e-6,
                      where: str = "model") -> float:
    """Uniform mask sparsity whose 2xMAC FLOPs are closest to ``target`` (paper App. A.2).

    Bisects the step function ``s -> FLOPs`` to float resolution, then keeps the better of the two
    steps around ``target``. Raises ``ValueError`` if ``target`` lies beyond ``rtol`` of what masks can
    reach (dense masks too cheap, or the unmasked part alone too costly).
    """
    lo, hi = 0.0, 1.0
    f_lo, f_hi = _flops_at(shapes, lo), _flops_at(shapes, hi)
    if f_lo < target * (1 - rtol):
        raise ValueError(f"{where}: dense masks give {f_lo} FLOPs, below the target {target}")
    if f_hi > target * (1 + rtol):
        raise ValueError(f"{where}: the unmasked layers alone cost {f_hi} FLOPs, above the target {target}")
    if f_lo <= target:
        return lo
    for _ in range(100):  # invariant: f_lo = f(lo) > target >= f(hi) = f_hi
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        f_mid = _flops_at(shapes, mid)
        if f_mid > target:
            lo, f_lo = mid, f_mid
        else:
            hi, f_hi = mid, f_mid
    return lo if abs(f_lo - target) < abs(f_hi - target) else hi


def refine_counts(shapes: list[LayerShape], active: dict[str, int], target: int) -> dict[str, int]:
    """Shift individual tensors' active counts by a few entries to close the FLOP gap to ``target``.

    Under a uniform sparsity, equal-shaped tensors (e.g. Parallel's K branches) step together, so the
    closest uniform step can miss ``target`` by many weights' FLOPs. Greedily, from the costliest weight
    (most output positions) down, each tensor takes the whole number of entries that best closes the
    remaining gap. The result is within half the cheapest sparse weight's FLOPs of ``target``.
    """
    active = dict(active)
    gap = target - _flops_of(shapes, active)
    layers = sorted((l for l in shapes if l.sparse_name), key=lambda l: -l.positions)
    for layer in layers:
        cost = 2 * layer.positions
        name = layer.sparse_name
        new = min(max(active[name] + round(gap / cost), 0), layer.weight_numel)
        gap -= (new - active[name]) * cost
        active[name] = new
    return active


def official_search(shapes: list[LayerShape], budget: int) -> float:
    """The released code's binary search for Sparse Wide (MAIN:319-370), on profiler FLOPs with the
    expected mask density ``1 - s`` of each probe; returns the last probed sparsity."""
    low, high, mid = 0.0, OFFICIAL_HIGH, 0.0
    names = [l.sparse_name for l in shapes if l.sparse_name]
    while low <= high:
        mid = low + (high - low) / 2
        rows = count_layers(shapes, _counts_at(shapes, mid, "official"), {n: 1 - mid for n in names})
        f = sum(r.profiler_flops for r in rows)
        if budget * (1 - OFFICIAL_TOLERANCE) <= f <= budget * (1 + OFFICIAL_TOLERANCE):
            break
        if f < budget * (1 + OFFICIAL_TOLERANCE):
            high = mid - OFFICIAL_INCREMENT
        else:
            low = mid + OFFICIAL_INCREMENT
    return mid


def plan_for(model: nn.Module, dense: nn.Module, in_shape: tuple[int, int, int], *, family: str,
             sparsity: float, variant: str = "paper", rtol: float = 1e-6) -> MaskPlan:
    """Mask plan of ``model`` (built as ``family`` at nominal ``sparsity``) against its ``dense`` model."""
    return plan_from_shapes(trace(model, in_shape), trace(dense, in_shape), family=family,
                            sparsity=sparsity, variant=variant, rtol=rtol)


def plan_from_shapes(shapes: list[LayerShape], dense_shapes: list[LayerShape], *, family: str,
                     sparsity: float, variant: str = "paper", rtol: float = 1e-6) -> MaskPlan:
    """:func:`plan_for` on the already traced (:func:`~sift_train.accounting.trace`) model and dense model."""
    check_family(family)
    check_variant(variant)
    s = check_sparsity(sparsity)
    dense_rows = count_layers(dense_shapes)
    dense_flops = sum(r.flops for r in dense_rows)
    dense_prof = sum(r.profiler_flops for r in dense_rows)
    has_sparse = any(l.sparse_name for l in shapes)
    if not has_sparse or family == "dense":
        mask_s, searched = (s if has_sparse else 0.0), False
    elif variant == "paper":
        mask_s = iso_flop_sparsity(shapes, dense_flops, rtol=rtol, where=f"{family} s={s}")
        searched = True
    elif family == "wide":
        mask_s, searched = official_search(shapes, dense_prof), True
    else:
        mask_s, searched = s, False
    active = _counts_at(shapes, mask_s, variant)
    if searched and variant == "paper":
        active = refine_counts(shapes, active, dense_flops)
    rows = count_layers(shapes, active)
    return MaskPlan(
        mask_sparsity=mask_s, active=active, flops=sum(r.flops for r in rows),
        profiler_flops=sum(r.profiler_flops for r in rows), dense_flops=dense_flops,
        dense_profiler_flops=dense_prof, searched=searched,
    )


def plan_masks(name: str, *, in_shape: tuple[int, int, int], num_classes: int, family: str,
               sparsity: float, variant: str = "paper", rtol: float = 1e-6) -> MaskPlan:
    """Mask plan for model ``name`` (see :func:`sift_train.models.build_model`); both the transformed
    and the dense model are built on the ``meta`` device, so this is cheap at any size."""
    kw = {"in_shape": in_shape, "num_classes": num_classes, "variant": variant, "device": "meta"}
    model = build_model(name, family=family, sparsity=sparsity, **kw)
    dense = build_model(name, family="dense", sparsity=0.0, **kw)
    return plan_for(model, dense, in_shape, family=family, sparsity=sparsity, variant=variant, rtol=rtol)

