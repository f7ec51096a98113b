"""Learning rate per optimizer step: ``step`` (multi-step, the paper's recipe) or ``cosine``, after an
optional linear warm-up (Goyal et al. 2017, "Accurate, Large Minibatch SGD", §2.2)."""
from __future__ import annotations

import math

from .config import LR_SCHEDULES, TrainConfig, lr_at_epoch

__all__ = ["LR_SCHEDULES", "lr_at", "total_steps"]


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: ``epochs · steps_per_epoch``, capped by ``max_steps`` (> 0)."""
    steps = cfg.epochs * steps_per_epoch
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """LR of the optimizer step with 0-based index ``step`` (updated every step).

    * warm-up (``warmup_epochs`` > 0): ``lr · (step + 1) / W`` for ``step < W``, with
      ``W = round(warmup_epochs · steps_per_epoch)`` warm-up steps;
    * ``step``: ``lr_at_epoch`` of the step's epoch (×``lr_gamma`` per passed milestone);
    * ``cosine``: ``lr · ½ (1 + cos(π (step − W) / (T − W)))`` over the ``T`` steps of the run
      (:func:`total_steps`), reaching 0 after the last step (SGDR without restarts, Loshchilov & Hutter 2017).
    """
    warm = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.lr_schedule == "step":
        return lr_at_epoch(cfg, step // steps_per_epoch)
    span = max(total_steps(cfg, steps_per_epoch) - warm, 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step - warm, span) / span))
