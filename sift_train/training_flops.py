"""Whole-run training FLOPs of dense-to-sparse (GraNet) training and the Iso-FLOP search of its target
density (Sparse-IFT App. A.2, spec methods.md §2.6).

FLOP model: every step's cost is the 2xMAC forward FLOPs (:mod:`sift_train.accounting`) of the masks in
effect during that step (the backward is a fixed multiple of the forward and cancels in the ratio to the
dense run); during a step every masked tensor holds its share of the schedule's exact total
(:func:`sift_train.schedule.split_count`), i.e. "every masked layer follows d(t)" (§2.6). For models whose
sparse layers all have one output position per weight (MLPs), FLOPs depend on the total active count
only, so a globally pruned run costs exactly what the model predicts; for convolutions the global
prune's per-layer split makes the match approximate.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .accounting import LayerShape, count_layers
from .schedule import GraNetSchedule, split_count


def _step_flops(shapes: list[LayerShape], schedule: GraNetSchedule, t: int) -> int:
    active = split_count(schedule.count_at(t), dict(schedule.numels))
    return sum(r.flops for r in count_layers(shapes, active))


def training_flops(shapes: list[LayerShape], schedule: GraNetSchedule) -> int:
    """``Σ_{s=1..T} F(masks in effect during step s)``: step ``s`` runs with the masks after the update
    at ``s − 1`` (updates happen after the optimizer step)."""
    events = [t for t in range(1, schedule.total) if schedule.is_prune_step(t)]
    bounds = [0, *events, schedule.total]
    total = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        total += (b - a) * _step_flops(shapes, schedule, a)
    return total


@dataclass(frozen=True)
class GraNetPlan:
    """The searched final density and what the run costs under the FLOP model."""

    final_density: float
    training_flops: int
    dense_training_flops: int

    @property
    def rel_error(self) -> float:
        return abs(self.training_flops / self.dense_training_flops - 1)


def search_final_density(shapes: list[LayerShape], dense_step_flops: int, schedule: GraNetSchedule, *,
                         rtol: float = 1e-6, where: str = "granet") -> GraNetPlan:
    """Final density ``d_f`` whose whole-run training FLOPs are closest to ``T x dense_step_flops``
    (binary search; training FLOPs are non-decreasing in ``d_f``). Raises ``ValueError`` when no
    ``d_f`` in ``(0, d_i]`` reaches the budget within ``rtol``."""
    budget = schedule.total * dense_step_flops

    def cost(d: float) -> int:
        return training_flops(shapes, replace(schedule, final_density=d))

    lo, hi = 1.0 / max(schedule.total_entries, 1), schedule.init_density
    f_lo, f_hi = cost(lo), cost(hi)
    if f_lo > budget * (1 + rtol):
        raise ValueError(
            f"{where}: no target sparsity meets the dense training FLOPs: even pruning to density {lo:.2g} "
            f"costs {f_lo / budget:.4f}x the dense run (initial density {schedule.init_density:g}, pruning "
            f"until step {schedule.prune_end} of {schedule.total}); lower the initial density, end pruning "
            f"earlier or use a lower --sparsity")
    if f_hi < budget * (1 - rtol):
        raise ValueError(
            f"{where}: no target sparsity meets the dense training FLOPs: even without pruning (density "
            f"{hi:g}) the run costs only {f_hi / budget:.4f}x the dense run; raise the initial density")
    for _ in range(60):
        mid = (lo + hi) / 2
        f = cost(mid)
        if f > budget:
            hi, f_hi = mid, f
        else:
            lo, f_lo = mid, f
    d, f = (lo, f_lo) if abs(f_lo - budget) <= abs(f_hi - budget) else (hi, f_hi)
    return GraNetPlan(final_density=d, training_flops=f, dense_training_flops=budget)
