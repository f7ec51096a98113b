"""CIFAR ResNet-18 of the released Sparse-IFT code (spec §1.1), for every Sparse-IFT family.

``conv_stem`` 3x3 (dense) -> BN -> ReLU -> 8 basic blocks, stage widths ``[64, 128, 256, 512]``, first
block of stages 2-4 with stride 2 -> global average pool -> ``fc`` (dense). Sparse Wide widens every
width (:func:`stage_widths`). Every block 3x3 conv is replaced by its Sparse-IFT member; the
1x1 shortcut convs stay plain convs. Sparse (when ``sparsity > 0``, spec §1.6): all block convs and
their replacements' weights and all shortcut convs; ``conv_stem`` and ``fc`` are dense.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..sparse_params import mark_sparse
from ..transforms import ParallelSum, transform
from ..widths import check_family, check_sparsity, check_variant, wide_width
from .init import materialize

STAGES = ((1, 2), (2, 2), (4, 2), (8, 2))  # (width multiple of W, blocks): R18:852-854
BASE_WIDTH = 64


class BasicBlock(nn.Module):
    """Post-activation basic block: ``relu(conv2(relu(conv1(x))) + shortcut(x))`` where ``conv1``/``conv2``
    are transformed conv + BN units (R18:611-649 and its family counterparts)."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.conv1, self.conv2, self.shortcut = conv1, conv2, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, widths: list[int], blocks: list[BasicBlock]):
        super().__init__()
        self.conv_stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv_stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def stage_widths(family: str, s: float, variant: str = "paper") -> list[int]:
    """Widths of the four stages (the stem has the first).

    Sparse Wide, ``paper``: every layer's own width times ``k_sw``, rounded once
    (:func:`~sift_train.widths.wide_width` of 64/128/256/512 -> 202/405/810/1619 at s = 0.9), as paper
    §2.3 widens every layer by the same ``k_sw`` (spec §1.0). ``official``: the released code widens the
    base width only and keeps the stage multiples, ``[W, 2W, 4W, 8W]`` with ``W = int(64*sqrt(round(k)))``
    (R18:838-841, 852-854 -> 202/404/808/1616). Other families: 64/128/256/512.
    """
    if family != "wide":
        return [mult * BASE_WIDTH for mult, _ in STAGES]
    if variant == "official":
        return [mult * wide_width(BASE_WIDTH, s, variant) for mult, _ in STAGES]
    return [wide_width(mult * BASE_WIDTH, s, variant) for mult, _ in STAGES]


def _unit(c_in: int, c_out: int, stride: int, family: str, s: float, variant: str, where: str):
    conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    return transform(conv, "dense" if family == "wide" else family, s, variant=variant,
                     norm=nn.BatchNorm2d, branch_act=lambda: nn.ReLU(inplace=True), where=where)


def _shortcut(c_in: int, c_out: int, stride: int, sparse: bool) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    conv = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
    if sparse:
        mark_sparse(conv)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(c_out)))


def _last_bns(block: BasicBlock) -> list[nn.BatchNorm2d]:
    unit = block.conv2
    if isinstance(unit, ParallelSum):
        return [branch.bn for branch in unit.branches]
    return [unit.bn]


def resnet18_cifar(num_classes: int = 100, family: str = "dense", sparsity: float = 0.0,
                   variant: str = "paper", *, in_channels: int = 3,
                   device: torch.device | str | None = None) -> ResNet18:
    """CIFAR ResNet-18 as Sparse-IFT ``family`` at nominal sparsity ``sparsity`` (spec §1.1-§1.7).

    ``variant="official"`` reproduces CerebrasResearch/Sparse-IFT@487c284 (widths, ranks, no per-branch
    ReLU in Parallel, Doped U/V sparse, zero-init of the last BN only for dense and Sparse Wide);
    ``"paper"`` follows the paper (spec §6.1). ``device="meta"`` builds a shape-only model for counting.
    """
    check_family(family)
    check_variant(variant)
    s = check_sparsity(sparsity, "resnet18")
    if s == 0:
        family = "dense"
    widths = stage_widths(family, s, variant)
    with torch.device("meta"):
        blocks, c_in, index = [], widths[0], 0
        for stage, ((_, count), c_out) in enumerate(zip(STAGES, widths)):
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                where = f"blocks.{index}"
                blocks.append(BasicBlock(
                    _unit(c_in, c_out, stride, family, s, variant, f"{where}.conv1"),
                    _unit(c_out, c_out, 1, family, s, variant, f"{where}.conv2"),
                    _shortcut(c_in, c_out, stride, s > 0),
                ))
                c_in, index = c_out, index + 1
        model = ResNet18(in_channels, num_classes, widths, blocks)
    materialize(model, device)
    if model.fc.weight.device.type != "meta" and (variant == "paper" or family in ("dense", "wide")):
        with torch.no_grad():  # zero-init residual (R18:786-789: `Block` only in the released code)
            for block in model.blocks:
                for bn in _last_bns(block):
                    bn.weight.zero_()
    return model
