"""When masks are updated and how much is dropped (sparse-ift.md §2.5); separate from the criterion."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .counts import count_at_density

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

    def targets_at(self, t: int, targets: dict[str, int]) -> dict[str, int]:
        """Active counts each tensor must end the update at ``t`` with: fixed for RigL/SET."""
        return targets

    def update_steps(self) -> list[int]:
        first = (self.begin // self.interval + 1) * self.interval
        return [t for t in range(first, self.end, self.interval) if self.is_update_step(t)]


def split_count(total: int, numels: dict[str, int]) -> dict[str, int]:
    """``total`` active entries split over tensors in proportion to ``numels`` (floor, then the
    largest remainders, ties by order), so the counts sum to ``total`` exactly."""
    n = sum(numels.values())
    raw = {k: total * v / n for k, v in numels.items()}
    out = {k: int(math.floor(r)) for k, r in raw.items()}
    rest = total - sum(out.values())
    for k in sorted(raw, key=lambda k: out[k] - raw[k])[:rest]:
        out[k] += 1
    return out


@dataclass(frozen=True)
class GraNetSchedule:
    """GraNet's two schedules (spec methods.md §2.2-2.3), in optimizer steps ``t`` counted after the step.

    * events every ``interval`` (ΔT) steps from ``prune_begin``; ``j = t // ΔT``,
      ``j₀ = prune_begin // ΔT``, ``j₁ = prune_end // ΔT``, ``n = j₁ − j₀``;
    * pruning at ``j = max(j₀, 1) … j₁ − 1`` to the Zhu–Gupta cubic density
      ``d_j = d_f + (d_i − d_f)(1 − (j − j₀)/n)³`` (``GC:369-381``; ``d_f`` itself is never applied);
    * zero-cost neuroregeneration at every event while ``t < regen_end`` (the code: no end), rate
      ``r(t) = 0.005 + (r₀ − 0.005)(1 + cos(π t / total))/2`` (``GC:27-36``).
    """

    total: int  # all optimizer steps of the run (T_max of the rate's cosine)
    final_density: float
    prune_end: int
    init_density: float = 1.0
    interval: int = 100  # ΔT
    prune_begin: int = 0
    regen_end: int | None = None  # None: until the end of training (GC:344)
    drop_fraction: float = 0.5  # r₀ (GC:9)
    numels: tuple[tuple[str, int], ...] = ()  # (name, numel) of the masked tensors

    def __post_init__(self):
        if not 0.0 < self.final_density <= self.init_density <= 1.0:
            raise ValueError(f"granet: need 0 < final density {self.final_density:g} <= initial density "
                             f"{self.init_density:g} <= 1")
        if self.interval < 1:
            raise ValueError(f"granet: update interval must be >= 1, got {self.interval}")
        if self.prune_end // self.interval - 1 < max(self.prune_begin // self.interval, 1):
            raise ValueError(f"granet: the prune window [{self.prune_begin}, {self.prune_end}) of steps holds no "
                             f"pruning event at ΔT = {self.interval}; lower --update-interval or train longer")

    @property
    def total_entries(self) -> int:
        """N, the numel of all masked tensors."""
        return sum(n for _, n in self.numels)

    @property
    def j0(self) -> int:
        return self.prune_begin // self.interval

    @property
    def j1(self) -> int:
        return self.prune_end // self.interval

    def is_prune_step(self, t: int) -> bool:
        return t % self.interval == 0 and max(self.j0, 1) <= t // self.interval <= self.j1 - 1

    def is_update_step(self, t: int) -> bool:
        if t < 1 or t % self.interval or t < self.prune_begin:
            return False
        return self.is_prune_step(t) or self.regen_end is None or t < self.regen_end

    def density_at(self, t: int) -> float:
        """Density after the last pruning event at or before step ``t``."""
        j = min(t // self.interval, self.j1 - 1)
        if j < max(self.j0, 1):
            return self.init_density
        frac = (j - self.j0) / (self.j1 - self.j0)
        return self.final_density + (self.init_density - self.final_density) * (1.0 - frac) ** 3

    def drop_fraction_at(self, t: int) -> float:
        return 0.005 + (self.drop_fraction - 0.005) * (1 + math.cos(math.pi * t / self.total)) / 2

    def count_at(self, t: int) -> int:
        """Total active entries after the pruning at ``t``: ``floor(N d(t))`` (sift's exact count)."""
        return count_at_density(self.total_entries, self.density_at(t))

    def targets_at(self, t: int, targets: dict[str, int]) -> dict[str, int]:
        """Targets at an update step: at a pruning step the uniform split of :meth:`count_at` (GraNet
        prunes globally and uses only their sum), otherwise ``targets`` unchanged."""
        if not self.is_prune_step(t):
            return targets
        return split_count(self.count_at(t), dict(self.numels))
