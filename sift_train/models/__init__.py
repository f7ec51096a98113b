"""Models of sift_train, each buildable as any Sparse-IFT family (see ``docs/models.md``).

``build_model`` builds the CLI's models (``MODELS``); ``gpt`` and ``mobilenet_v2`` are width-multiplier
factories for :func:`sift_train.sparse_ift` (``docs/byom.md``)."""
from __future__ import annotations

import torch
from torch import nn

from .gpt import GPT, GPTConfig, gpt
from .mobilenet import MobileNetV2, mobilenet_v2
from .resnet import ResNet18, resnet18_cifar
from .small import CNN, CNN1d, MLP, cnn, cnn1d, mlp

MODELS = ("resnet18", "mlp", "cnn", "cnn1d")

__all__ = ["MODELS", "build_model", "resnet18_cifar", "mlp", "cnn", "cnn1d", "gpt", "mobilenet_v2", "ResNet18",
           "MLP", "CNN", "CNN1d", "GPT", "GPTConfig", "MobileNetV2"]


def build_model(name: str, *, in_shape: tuple[int, int, int], num_classes: int, family: str = "dense",
                sparsity: float = 0.0, variant: str = "paper",
                device: torch.device | str | None = None) -> nn.Module:
    """Model ``name`` for inputs ``in_shape = (C, H, W)`` as Sparse-IFT ``family`` at nominal ``sparsity``.

    ``family="dense"`` with ``sparsity > 0`` is plain sparse training of the dense architecture (the
    same tensors sparse as in the transformed families); ``sparsity = 0`` gives the dense model for every
    family. ``device="meta"`` builds a shape-only model (free; for counting).
    """
    if name == "resnet18":
        if len(in_shape) != 3:
            raise ValueError(f"resnet18: needs image inputs (C, H, W), got shape {tuple(in_shape)}")
        return resnet18_cifar(num_classes, family, sparsity, variant, in_channels=in_shape[0],
                              device=device)
    if name == "mlp":
        return mlp(in_shape, num_classes, family, sparsity, variant, device=device)
    if name == "cnn":
        return cnn(in_shape, num_classes, family, sparsity, variant, device=device)
    if name == "cnn1d":
        return cnn1d(in_shape, num_classes, family, sparsity, variant, device=device)
    raise ValueError(f"unknown model {name!r}; expected one of {list(MODELS)}")
