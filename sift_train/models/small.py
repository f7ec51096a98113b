"""Small models, built through the same transformations as ResNet-18: an MLP (any input), a 2-D CNN
(8x8 digits, 32x32 CIFAR) and a 1-D CNN (MNIST-1D's length-40 signals).

First and last layers are dense and untransformed; every hidden layer is transformed and, when
``sparsity > 0``, sparse (spec §1.6 convention). Sparse Wide widens every hidden width (so also the
dense first layer's output and the dense last layer's input).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..transforms import transform
from ..widths import check_family, check_sparsity, check_variant, wide_width
from .init import materialize


def _setup(family: str, sparsity: float, variant: str, where: str) -> tuple[str, float]:
    check_family(family)
    check_variant(variant)
    s = check_sparsity(sparsity, where)
    return ("dense" if s == 0 else family), s


def _family_width(width: int, family: str, s: float, variant: str) -> int:
    return wide_width(width, s, variant) if family == "wide" else width


def _sum_norm(unit: nn.Module, norm: nn.Module, family: str, variant: str) -> nn.Module:
    """Paper-variant Sparse Parallel in the small CNNs: BN after the sum of the K per-branch
    ``ReLU(BN(conv))`` outputs (the ImageNet code's form, spec §1.3). Without it the sum grows ~K
    times per unit in these residual-free stacks, and at s = 0.9 (K = 10) training collapses."""
    if family != "parallel" or variant != "paper":
        return unit
    return nn.Sequential(OrderedDict(sum=unit, bn=norm))


class MLP(nn.Module):
    """``flatten -> fc_in -> ReLU -> [hidden_i -> ReLU]* -> fc_out``."""

    def __init__(self, fc_in: nn.Module, hidden: list[nn.Module], fc_out: nn.Module):
        super().__init__()
        self.fc_in, self.hidden, self.fc_out = fc_in, nn.ModuleList(hidden), fc_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.fc_in(torch.flatten(x, 1)))
        for layer in self.hidden:
            out = F.relu(layer(out))
        return self.fc_out(out)


def mlp(in_shape: tuple[int, ...], num_classes: int, family: str = "dense", sparsity: float = 0.0,
        variant: str = "paper", *, hidden: tuple[int, ...] = (256, 256, 256),
        device: torch.device | str | None = None) -> MLP:
    """MLP with ``len(hidden) - 1`` transformed hidden layers (``hidden[i] -> hidden[i+1]``)."""
    family, s = _setup(family, sparsity, variant, "mlp")
    if len(hidden) < 2:
        raise ValueError(f"mlp: need at least two hidden widths to have a hidden layer, got {hidden}")
    widths = [_family_width(h, family, s, variant) for h in hidden]
    d_in = math.prod(in_shape)
    with torch.device("meta"):
        layers = [
            transform(nn.Linear(a, b), "dense" if family == "wide" else family, s, variant=variant,
                      branch_act=nn.ReLU, where=f"hidden.{i}")
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
        ]
        model = MLP(nn.Linear(d_in, widths[0]), layers, nn.Linear(widths[-1], num_classes))
    return materialize(model, device)


def _conv_units(conv: type[nn.Module], norm: type[nn.Module], plan, family: str, s: float,
                variant: str) -> list[nn.Module]:
    """The transformed 3-wide conv units ``(c_in, c_out, stride)`` of :func:`cnn` and :func:`cnn1d`."""
    return [
        _sum_norm(transform(conv(a, b, 3, stride, 1, bias=False), "dense" if family == "wide" else family,
                            s, variant=variant, norm=norm, branch_act=lambda: nn.ReLU(inplace=True),
                            where=f"units.{i}"), norm(b), family, variant)
        for i, (a, b, stride) in enumerate(plan)
    ]


class CNN(nn.Module):
    """``stem (conv3x3, BN, ReLU) -> [unit_i -> ReLU]* -> global avg pool -> fc``."""

    def __init__(self, stem: nn.Module, units: list[nn.Module], fc: nn.Module):
        super().__init__()
        self.stem, self.units, self.fc = stem, nn.ModuleList(units), fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.stem(x))
        for unit in self.units:
            out = F.relu(unit(out))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def cnn(in_shape: tuple[int, int, int], num_classes: int, family: str = "dense", sparsity: float = 0.0,
        variant: str = "paper", *, width: int = 16, device: torch.device | str | None = None) -> CNN:
    """Small CNN: dense stem ``C -> w``, transformed 3x3 units ``w -> 2w`` (stride 2), ``2w -> 2w``,
    ``2w -> 4w`` (stride 2), each followed by BN and ReLU, then a dense classifier."""
    family, s = _setup(family, sparsity, variant, "cnn")
    if len(in_shape) != 3:
        raise ValueError(f"cnn: needs image inputs (C, H, W), got shape {tuple(in_shape)}; use cnn1d for 1-D data")
    w = _family_width(width, family, s, variant)
    plan = ((w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2))
    with torch.device("meta"):
        stem = nn.Sequential(OrderedDict(conv=nn.Conv2d(in_shape[0], w, 3, 1, 1, bias=False),
                                         bn=nn.BatchNorm2d(w)))
        units = _conv_units(nn.Conv2d, nn.BatchNorm2d, plan, family, s, variant)
        model = CNN(stem, units, nn.Linear(4 * w, num_classes))
    return materialize(model, device)


class CNN1d(CNN):
    """``stem (conv k5, BN, ReLU) -> [unit_i -> ReLU]* -> flatten -> fc`` on ``(N, C, L)`` signals."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def cnn1d(in_shape: tuple[int, ...], num_classes: int, family: str = "dense", sparsity: float = 0.0,
          variant: str = "paper", *, width: int = 16, device: torch.device | str | None = None) -> CNN1d:
    """1-D CNN for MNIST-1D: dense stem ``C -> w`` (k = 5), transformed k = 3 units ``w -> 2w``
    (stride 2), ``2w -> 2w``, ``2w -> 4w`` (stride 2), each followed by BN and ReLU, then a dense
    classifier on the flattened ``4w x L/4`` features (positions matter in MNIST-1D)."""
    family, s = _setup(family, sparsity, variant, "cnn1d")
    if len(in_shape) != 2:
        raise ValueError(f"cnn1d: needs 1-D inputs (C, L), got shape {tuple(in_shape)}")
    w = _family_width(width, family, s, variant)
    plan = ((w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2))
    length = in_shape[1]
    for _, _, stride in plan:
        length = (length - 1) // stride + 1
    with torch.device("meta"):
        stem = nn.Sequential(OrderedDict(conv=nn.Conv1d(in_shape[0], w, 5, 1, 2, bias=False),
                                         bn=nn.BatchNorm1d(w)))
        units = _conv_units(nn.Conv1d, nn.BatchNorm1d, plan, family, s, variant)
        model = CNN1d(stem, units, nn.Linear(4 * w * length, num_classes))
    return materialize(model, device)
