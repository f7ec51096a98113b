"""When masks are updated and how much is dropped (sparse-ift.md §2.5); separate from the criterion."""
from __future__ import annotations

import math
from dataclasses import dataclass

ANNEALS = ("cosine", "constant")


@dataclass(frozen=True)
class UpdateSchedule:
    """Mask-update steps ``begin < t < end`` with ``t % interval == 0`` (``DYN:212-215``), where ``t``
    is the optimizer step count *after* the step; drop fraction ``α(t)`` annealed from ``drop_fraction``.

    Defaults from ``LAUNCH:63-71``: ΔT = 100, α₀ = 0.3, cosine, begin 0 (end: 75 % of all steps).
    """

    end: int
    interval: int = 100
    drop_fraction: float = 0.3
    begin: int = 0
    anneal: str = "cosine"

    def __post_init__(self):
        if self.interval < 1:
            raise ValueError(f"update interval must be >= 1, got {self.interval}")
        if not 0.0 <= self.drop_fraction <= 1.0:
            raise ValueError(f"drop fraction must be in [0, 1], got {self.drop_fraction}")
        if self.anneal not in ANNEALS:
            raise ValueError(f"unknown drop-fraction anneal {self.anneal!r}; expected one of {ANNEALS}")

    @classmethod
    def for_training(cls, total_steps: int, end_fraction: float = 0.75, **kw) -> "UpdateSchedule":
        """``end = int(end_fraction * total_steps)`` (``DYN:99-102``: 0.75 of all optimizer steps)."""
        return cls(end=int(end_fraction * total_steps), **kw)

    def is_update_step(self, t: int) -> bool:
        return self.begin < t < self.end and t % self.interval == 0

    def drop_fraction_at(self, t: int) -> float:
        """``α(t) = α₀ · (0.5 + 0.5 · cos(π (t − begin) / (end − begin)))`` (``DYN:217-244``)."""
        if self.anneal == "constant":
            return self.drop_fraction
        span = max(self.end - self.begin, 1)
        return self.drop_fraction * (0.5 + 0.5 * math.cos(math.pi * (t - self.begin) / span))

    def update_steps(self) -> list[int]:
        first = (self.begin // self.interval + 1) * self.interval
        return [t for t in range(first, self.end, self.interval) if self.is_update_step(t)]
