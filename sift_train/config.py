"""Training configuration: a dataclass whose defaults are the paper's CIFAR-100 ResNet-18 recipe, plus
named presets (sparse-ift.md §4; §6.1 for what ``variant`` switches)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from .datasets import DATASETS
from .distributions import DISTRIBUTIONS
from .method_options import check_method_options
from .methods import METHODS
from .models import MODELS
from .precision import AMP_MODES
from .schedule import ANNEALS
from .widths import FAMILIES, VARIANTS, check_sparsity

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("step", "cosine")  # sift_train/lr.py


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults: the paper's CIFAR-100 recipe (sparse-ift.md §4, ``BASE``/``LAUNCH``).

    ``variant`` selects, besides the model's own switches (``build_model``), three training switches
    of sparse-ift.md §6.1:

    ============================  ==========================  ===============================
    switch                        ``paper``                   ``official`` (released code)
    ============================  ==========================  ===============================
    initial masks                 exact count, random         Bernoulli(1 - s) per entry
    weight decay on BN and bias   no                          yes
    LR milestone ``m``            from epoch ``m`` (0-idx.)   from epoch ``m + 1`` (MAIN:680)
    ============================  ==========================  ===============================
    """

    # what is trained
    model: str = "resnet18"
    dataset: str = "cifar100"
    family: str = "wide"
    sparsity: float = 0.75
    variant: str = "paper"
    # sparse training (sparse-ift.md §2.5, LAUNCH:63-71)
    method: str = "rigl"
    distribution: str = "uniform"
    iso_flop: bool = True  # mask sparsity from the Iso-FLOP search where sift_train.isoflop has one
    update_interval: int = 100  # ΔT
    drop_fraction: float = 0.3  # α0
    anneal: str = "cosine"
    end_fraction: float = 0.75  # mask updates stop at 75 % of all steps (DYN:99-102)
    # further methods (methods.md; defaults and sources in docs/training.md)
    sparsity_pattern: str = ""  # "N:M" or "N:M-T" with static/set/rigl (§4)
    nm_solver: str = "exact"  # N:M-T tiles: "exact" (LP) or "greedy" (§4.2)
    init_density: float = 1.0  # GraNet d_i: 1 = dense-to-sparse (§2.4)
    prune_end_fraction: float = 0.5  # GraNet: pruning ends at this fraction of all steps (GSH: 80/160)
    block_dims: tuple[int, ...] = (1, 1)  # Spartan blocks (out, in) (§1.7)
    spartan_budget: str = "global"  # Spartan: global, uniform or erk (§1.6)
    cost_model: str = "sparsity"  # Spartan: sparsity or flops (§1.6)
    spartan_beta: float = 10.0  # Spartan β_T (SPR50: ResNet-50 runs)
    # optimisation (BASE:2-10, MAIN:534-539)
    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (60, 120, 160)
    lr_gamma: float = 0.2
    # schedule length, LR shape and how a step is computed (sift_train/lr.py, precision.py, steps.py)
    lr_schedule: str = "step"
    warmup_epochs: float = 0.0
    max_steps: int = 0  # 0: epochs * steps per epoch
    accumulate: int = 1  # micro-batches per optimizer step (batch_size is the global batch of one step)
    amp: str = "off"
    # bookkeeping
    seed: int = 0
    data_dir: str | None = None
    # snapshot schedule (sift_train.snapshots): init and final always
    snapshot_every: int = 0  # N > 0: also every N steps
    snapshot_at: tuple[int, ...] = ()  # also at these steps
    snapshot_log: int = 0  # also at this many log-spaced steps
    snapshot_updates: bool = True  # just before every mask update
    snapshot_epochs: bool = True  # at every epoch end
    eval_batch_size: int = 1000
    preset: str = "cifar"

    def __post_init__(self):
        """Validate every field once, here, before any work (names against the registries)."""
        for name, allowed in (("model", MODELS), ("dataset", DATASETS), ("family", FAMILIES),
                              ("variant", VARIANTS), ("method", METHODS),
                              ("distribution", DISTRIBUTIONS), ("anneal", ANNEALS),
                              ("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
                              ("amp", AMP_MODES)):
            _choice(name, getattr(self, name), allowed)
        check_sparsity(self.sparsity, "TrainConfig")
        for name in ("epochs", "batch_size", "update_interval", "eval_batch_size", "accumulate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0 or self.warmup_epochs < 0:
            raise ValueError(f"max_steps and warmup_epochs must be >= 0, got {self.max_steps}, "
                             f"{self.warmup_epochs}")
        for name in ("snapshot_every", "snapshot_log"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.end_fraction <= 1.0:
            raise ValueError(f"end_fraction must be in (0, 1], got {self.end_fraction}")
        if self.distribution == "erk" and self.iso_flop and self.sparsity > 0:
            raise ValueError("distribution 'erk' has no Iso-FLOP search (its per-layer densities change "
                             "the FLOPs); pass --iso-flop false to train ERK at the nominal sparsity")
        _check_optimisation(self)
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "snapshot_at", tuple(sorted({int(m) for m in self.snapshot_at})))
        object.__setattr__(self, "block_dims", tuple(int(b) for b in self.block_dims))
        check_method_options(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["snapshot_at"] = list(self.snapshot_at)
        d["block_dims"] = list(self.block_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Presets: overrides of the dataclass defaults. "cifar" is the paper recipe itself; "digits" is a
# CPU-sized recipe for the bundled 8x8 digits (1,437 training images -> 23 steps per epoch at batch 64).
PRESETS: dict[str, dict] = {
    "cifar": {},
    # MNIST-1D (4,000 training signals -> 63 steps per epoch at batch 64); see docs/training.md.
    "mnist1d": dict(model="mlp", dataset="mnist1d", epochs=20, batch_size=64, lr=0.05,
                    milestones=(10, 15), update_interval=25, eval_batch_size=1000),
    "digits": dict(model="cnn", dataset="digits", epochs=30, batch_size=64, lr=0.05,
                   milestones=(15, 25), update_interval=20, eval_batch_size=2000),
}


def preset_for(dataset: str) -> str:
    if dataset.startswith("cifar"):
        return "cifar"
    return "mnist1d" if dataset == "mnist1d" else "digits"


def make_config(preset: str | None = None, **overrides) -> TrainConfig:
    """``TrainConfig`` from a preset (default: by dataset) and explicit overrides (``None`` = unset)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    dataset = overrides.get("dataset")
    name = preset or preset_for(dataset or PRESETS["mnist1d"]["dataset"])
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return replace(TrainConfig(), **{**PRESETS[name], "preset": name, **overrides})


def lr_at_epoch(cfg: TrainConfig, epoch: int) -> float:
    """MultiStep LR (×``lr_gamma`` per passed milestone); ``official`` applies each one epoch late."""
    late = cfg.variant == "official"
    passed = sum(1 for m in cfg.milestones if (epoch > m if late else epoch >= m))
    return cfg.lr * cfg.lr_gamma ** passed


def _check_optimisation(cfg: TrainConfig) -> None:
    """Optimizer hyper-parameters: finite ``lr`` and ``lr_gamma`` > 0, ``momentum`` in [0, 1) (SGD's
    momentum buffer grows without bound from 1 on), finite ``weight_decay`` >= 0, ``drop_fraction`` in
    [0, 1]. Every comparison is written so that NaN fails it."""
    rules = (("lr", cfg.lr, "a finite number > 0", lambda v: 0.0 < v < math.inf),
             ("lr_gamma", cfg.lr_gamma, "a finite number > 0", lambda v: 0.0 < v < math.inf),
             ("momentum", cfg.momentum, "in [0, 1)", lambda v: 0.0 <= v < 1.0),
             ("weight_decay", cfg.weight_decay, "a finite number >= 0", lambda v: 0.0 <= v < math.inf),
             ("drop_fraction", cfg.drop_fraction, "in [0, 1]", lambda v: 0.0 <= v <= 1.0),
             ("warmup_epochs", cfg.warmup_epochs, "a finite number >= 0", lambda v: 0.0 <= v < math.inf))
    for name, value, rule, ok in rules:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f"{name} must be {rule}, got {value!r}")


def _choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(allowed)}")


__all__ = ["TrainConfig", "PRESETS", "make_config", "lr_at_epoch", "preset_for"]
