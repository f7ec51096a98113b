"""MobileNetV2 (Sandler et al. 2018), the efficient architecture of paper Table 9.

Inverted residual blocks: 1x1 expansion conv (factor ``t``), 3x3 depthwise conv, 1x1 linear projection,
each with BatchNorm (ReLU6 after the first two); a residual when the stride is 1 and the widths agree.
Widths are ``make_divisible(c * width_multiplier, 8)`` and the last conv has
``make_divisible(1280 * max(1, width_multiplier), 8)`` channels (as torchvision), so ``mobilenet_v2`` is
a Sparse Wide factory ``width_multiplier -> nn.Module``. With :func:`sift_train.sparse_ift` the
depthwise convs stay dense and the pointwise convs are transformed.
"""
from __future__ import annotations

import torch
from torch import nn

#: (expansion t, channels c, repeats n, first stride s), Sandler et al. 2018 Table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor``, never below 90 % of ``value`` (torchvision ``_make_divisible``)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = [conv_bn(c_in, hidden)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, c_out, act=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_multiplier: float = 1.0, in_channels: int = 3,
                 small_input: bool = False):
        super().__init__()
        c = make_divisible(32 * width_multiplier)
        last = make_divisible(1280 * max(1.0, width_multiplier))
        layers = [conv_bn(in_channels, c, 3, 1 if small_input else 2)]
        for t, channels, n, s in SETTINGS:
            out = make_divisible(channels * width_multiplier)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        layers.append(conv_bn(c, last))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000, width_multiplier: float = 1.0, *, in_channels: int = 3,
                 small_input: bool = False, device: torch.device | str | None = None) -> MobileNetV2:
    """MobileNetV2; ``small_input=True`` makes the stem stride 1 (32x32 images)."""
    with torch.device(device or "cpu"):
        return MobileNetV2(num_classes, width_multiplier, in_channels, small_input)
