"""What a method needs before training starts (docs/training.md): pruning-at-init scores, GraNet's
schedule and Iso-FLOP target density, N:M initial masks. :func:`plan_method` turns the default random
masks of :func:`sift_train.train.build` into the method's own masks, targets and schedule."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .accounting import count_layers, trace
from .config import TrainConfig
from .counts import count_at_density
from .data import Batches, Dataset, prepare
from .datasets import dataset_info
from .masking import random_masks
from .methods import MaskMethod
from .methods.nm import PatternMethod, parse_pattern
from .methods.pruning_at_init import PruningAtInit, ScoringData
from .models import build_model
from .methods.spartan import SpartanSchedule, SpartanTraining
from .schedule import GraNetSchedule, UpdateSchedule
from .sparse_params import sparse_parameters
from .sparse_training import SparseTraining, declared_masks, declared_sparse_parameters
from .training_flops import search_final_density, training_flops


@dataclass
class MethodPlan:
    method: MaskMethod
    masks: dict[str, torch.Tensor]
    targets: dict[str, int]
    schedule: UpdateSchedule | GraNetSchedule
    extra: dict = field(default_factory=dict)  # written into config.json next to "config"
    changed: bool = True  # masks differ from the default plan's: their sparsity is recomputed
    factory: Callable[..., object] | None = None  # (model, optimizer, generator) -> Spartan's trainer

    def build(self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator):
        """The object the training loop drives: :class:`SparseTraining` or the method's own trainer."""
        if self.factory is not None:
            return self.factory(model, optimizer, generator)
        return SparseTraining.from_parts(model, optimizer, self.masks, self.targets, self.method, self.schedule, generator)

    def mask_sparsity(self, default: dict[str, float]) -> dict[str, float]:
        if not self.changed:
            return default
        return {n: 1.0 - int(m.sum()) / m.numel() for n, m in self.masks.items()}


def plan_method(cfg: TrainConfig, model: nn.Module, method: MaskMethod, masks: dict[str, torch.Tensor],
                targets: dict[str, int], schedule: UpdateSchedule, total_steps: int,
                scoring: ScoringData, generator: torch.Generator) -> MethodPlan:
    if cfg.sparsity_pattern:
        n, m, transposable = parse_pattern(cfg.sparsity_pattern)
        wrapped = PatternMethod(method, n, m, transposable, cfg.nm_solver)
        params = sparse_parameters(model)
        masks = {name: wrapped.initial_mask(p) for name, p in params.items()}
        return MethodPlan(wrapped, masks, _counts(masks), schedule)
    if isinstance(method, PruningAtInit):
        masks, targets, schedule = method.prepare(model, masks, targets, schedule, total_steps=total_steps,
                                                  generator=generator, data=scoring)
        return MethodPlan(method, masks, targets, schedule)
    if method.name == "granet":
        return _granet(cfg, model, method, schedule, total_steps, generator)
    if method.name == "spartan":
        return _spartan(cfg, model, method, masks, targets, schedule, total_steps)
    return MethodPlan(method, masks, targets, schedule, changed=False)


def scoring_data(cfg: TrainConfig, data: Dataset, device: torch.device) -> ScoringData:
    """Fresh, non-augmented training batches for pruning-at-init scores (their own order: seed + 1)."""

    def batches():
        for x, y, _ in Batches(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed + 1).epoch(0):
            yield prepare(x, data, False, None).to(device), y.to(device)

    return ScoringData(batches, dataset_info(cfg.dataset).in_shape)


def _counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in masks.items()}


def _granet(cfg: TrainConfig, model: nn.Module, method: MaskMethod, schedule: UpdateSchedule,
            total: int, generator: torch.Generator) -> MethodPlan:
    """Dense-to-sparse (``init_density`` 1) or sparse-to-sparse GraNet; the final density is the
    Iso-FLOP search's (training FLOPs = the dense model's, App. A.2) with ``iso_flop``, else ``1 - s``."""
    if cfg.sparsity == 0:
        raise ValueError("granet: --sparsity must be > 0 (the final sparsity, or the nominal one to search)")
    params = sparse_parameters(model)
    numels = tuple((n, p.numel()) for n, p in params.items())
    base = GraNetSchedule(total=total, final_density=min(1.0 - cfg.sparsity, cfg.init_density),
                          prune_end=int(cfg.prune_end_fraction * total), init_density=cfg.init_density,
                          interval=cfg.update_interval,
                          regen_end=None if cfg.end_fraction >= 1 else int(cfg.end_fraction * total),
                          drop_fraction=cfg.drop_fraction, numels=numels)
    info = dataset_info(cfg.dataset)
    shapes = trace(model, info.in_shape)
    dense = build_model(cfg.model, in_shape=info.in_shape, num_classes=info.num_classes, family="dense",
                        sparsity=0.0, variant=cfg.variant, device="meta")
    dense_step = sum(r.flops for r in count_layers(trace(dense, info.in_shape)))
    record = {"nominal_sparsity": cfg.sparsity, "searched_sparsity": None}
    if cfg.iso_flop:
        plan = search_final_density(shapes, dense_step, base, where=f"granet {cfg.family} s={cfg.sparsity:g}")
        base = GraNetSchedule(**{**base.__dict__, "final_density": plan.final_density})
        record["searched_sparsity"] = 1.0 - plan.final_density
    record.update(final_density=base.final_density, init_density=base.init_density,
                  training_flops=training_flops(shapes, base), dense_training_flops=total * dense_step,
                  prune_events=[t for t in range(1, total) if base.is_prune_step(t)])
    shapes_by_name = {n: tuple(p.shape) for n, p in params.items()}
    counts = {n: int(c) for n, c in zip(shapes_by_name, [count_at_density(k, cfg.init_density) for _, k in numels])}
    masks = random_masks(shapes_by_name, {n: 1.0 - cfg.init_density for n in shapes_by_name}, generator,
                         exact=True, counts=counts)
    return MethodPlan(method, masks, counts, base, {"granet": record})


def _spartan(cfg: TrainConfig, model: nn.Module, method: MaskMethod, masks: dict[str, torch.Tensor],
             targets: dict[str, int], schedule: UpdateSchedule, total: int) -> MethodPlan:
    """Spartan at the default plan's overall density (the Iso-FLOP search's with ``iso_flop``)."""
    params = sparse_parameters(model)
    density = sum(targets.values()) / sum(p.numel() for p in params.values())
    positions = {l.sparse_name: l.positions for l in trace(model, dataset_info(cfg.dataset).in_shape)
                 if l.sparse_name}
    sched = SpartanSchedule(total=total, density=density, beta_target=cfg.spartan_beta,
                            block_numel=cfg.block_dims[0] * cfg.block_dims[1])

    def factory(model, optimizer, generator):
        return SpartanTraining(model, optimizer, params, sched, budget=cfg.spartan_budget,
                               block_dims=cfg.block_dims, cost_model=cfg.cost_model, positions=positions,
                               record_every=cfg.update_interval, generator=generator)

    dense = {n: torch.ones_like(m) for n, m in masks.items()}
    extra = {"spartan": {"density": density, "warmup_end": sched.warmup_end, "freeze_step": sched.freeze_step,
                         "beta_final": sched.beta_at(sched.freeze_step)}}
    return MethodPlan(method, dense, targets, schedule, extra, changed=False, factory=factory)


def spartan_training(model: nn.Module, optimizer: torch.optim.Optimizer, sparsity: float | None = None,
                     distribution: str = "erk", total_steps: int | None = None, update_every: int = 100,
                     drop_fraction: float = 0.3, *, anneal: str = "cosine", end_fraction: float = 0.75,
                     seed: int = 0, data=None) -> SpartanTraining:
    """``SparseTraining(model, optimizer, method="spartan", ...)``: Spartan at density ``1 − sparsity``
    (or the density of the model's ``<param>_mask`` buffers), global budget, default schedules (§1.5).
    ``distribution``, ``drop_fraction``, ``anneal``, ``end_fraction`` and ``data`` do not apply."""
    params = declared_sparse_parameters(model)
    if total_steps is None or total_steps < 1:
        raise ValueError(f"SparseTraining: method 'spartan' needs total_steps >= 1, got {total_steps!r}")
    if sparsity is None:
        masks = declared_masks(model, "for spartan")
        density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    else:
        density = 1.0 - float(sparsity)
    return SpartanTraining(model, optimizer, params, SpartanSchedule(total=total_steps, density=density),
                           record_every=update_every, generator=torch.Generator().manual_seed(seed))
