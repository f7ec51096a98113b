"""Which device a run uses and how the model is laid out on it."""
from __future__ import annotations

import torch
from torch import nn

DEVICE_HELP = "auto (cuda if available), cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device, local_rank: int | None = None) -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; under torchrun a ``cuda`` process uses
    ``cuda:LOCAL_RANK``. Raises ValueError with one line for unknown or unavailable devices."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; expected {DEVICE_HELP}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r}: sift_train runs on cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine (use --device cpu)")
        if local_rank is not None:
            dev = torch.device("cuda", local_rank)
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {str(dev)!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def use_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Channels-last (NHWC) memory format for 2-D conv models on CUDA, where cuDNN's NHWC kernels (and
    tensor cores under AMP) are faster; on CPU and for models without ``Conv2d`` NCHW is kept."""
    return device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in the memory format :func:`use_channels_last` picks."""
    if use_channels_last(model, device):
        return model.to(device=device, memory_format=torch.channels_last)
    return model.to(device)
