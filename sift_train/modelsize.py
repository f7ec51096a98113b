"""Memory a run needs, checked before its model is allocated (``docs/training.md``, "Resuming and failures").

Every Sparse-IFT family except doped grows the transformed layers' parameters by about ``1/(1-s)``, so
``--sparsity`` close to 1 asks for an impossible model (0.9999999 makes a wide ResNet-18 of 10^14
parameters). :func:`check_model_size` counts the parameters on the ``meta`` device (no memory) and
refuses a run whose lower bound of training memory, ``4 B x (weights + gradients + optimizer state)``,
exceeds the limit: ``SIFT_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix; ``none`` switches the check
off) or else the machine's physical memory (CPU) or the GPU's memory (CUDA).
"""
from __future__ import annotations

import os
import re

import torch

from .config import TrainConfig
from .datasets import dataset_info
from .models import build_model
from .widths import parallel_branches

ENV = "SIFT_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parameter_count(cfg: TrainConfig) -> int:
    """Parameters of ``cfg``'s model, counted on shape-only (``meta``) models. Sparse Parallel has
    ``a + b*K`` parameters for ``K`` branches; for large ``K`` (whose meta model alone would take
    ``K`` times the modules) ``a`` and ``b`` come from the models with K = 2 and K = 4."""
    info = dataset_info(cfg.dataset)

    def count(sparsity: float) -> int:
        model = build_model(cfg.model, in_shape=info.in_shape, num_classes=info.num_classes,
                            family=cfg.family, sparsity=sparsity, variant=cfg.variant, device="meta")
        return sum(p.numel() for p in model.parameters())

    if cfg.family == "parallel" and cfg.sparsity > 0:
        k = parallel_branches(cfg.sparsity, cfg.variant)
        if k > 8:
            two, four = count(0.5), count(0.75)  # K = 2 and K = 4 in both variants
            per_branch = (four - two) // 2
            return two + (k - 2) * per_branch
    return count(cfg.sparsity)


def training_bytes(cfg: TrainConfig, params: int) -> int:
    """Lower bound of the memory training needs: float32 weights, gradients and optimizer state (SGD
    momentum: 1 tensor, Adam: 2). Activations, masks and checkpoint copies come on top."""
    states = 2 if cfg.optimizer == "adam" else int(cfg.momentum > 0)
    return 4 * params * (2 + states)


def parse_size(text: str) -> int | None:
    """``"64G"`` -> 68719476736 bytes; ``"none"`` -> ``None`` (no limit)."""
    if text.strip().lower() in ("none", "off"):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"{ENV}={text!r}: expected a size like 64G, 500M or 1000000 (bytes), or none")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def memory_limit(device: torch.device) -> tuple[int | None, str]:
    """``(bytes, where it comes from)``; ``None`` bytes where no limit applies or none can be read."""
    if os.environ.get(ENV, "").strip():
        return parse_size(os.environ[ENV]), f"{ENV}={os.environ[ENV]}"
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, f"the memory of {device}"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's physical memory"
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None, "unknown"


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def check_model_size(cfg: TrainConfig, device: torch.device) -> int:
    """Refuse (``ValueError``, one line) a model that cannot fit; return its parameter count."""
    params = parameter_count(cfg)
    need = training_bytes(cfg, params)
    limit, where = memory_limit(device)
    if limit is not None and need > limit:
        raise ValueError(f"{cfg.model} {cfg.family} at sparsity {cfg.sparsity!r} has {params:,} parameters and "
                         f"needs at least {_gib(need)} to train, more than the {_gib(limit)} of {where}; "
                         f"lower --sparsity (or set {ENV} to override)")
    return params
