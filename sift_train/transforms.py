"""The four Sparse Iso-FLOP Transformations as drop-in replacements of ``nn.Linear`` / ``nn.Conv1d`` /
``nn.Conv2d``.

:func:`transform` turns one dense layer (optionally followed by a norm layer) into its Sparse-IFT
member for sparsity ``s`` (spec ``sparse-ift.md`` §1.0-§1.5):

* ``dense``      – the layer itself; its weight is sparse when ``s > 0`` (plain sparse training);
* ``wide``       – the layer with input and output widths scaled by ``k_sw`` (:func:`widths.wide_width`);
  whole models widen every layer by the same rule (:mod:`sift_train.models`);
* ``parallel``   – ``y = sum_i branch_i(x)``, ``K`` sparse copies of the layer, each with its own norm
  (and, in the paper variant, its own non-linearity ``branch_act``);
* ``factorized`` – ``y = V(σ(U x))``, ``σ`` = ``mid_norm`` + ReLU, U (k x k, ``c_in -> d_h``) and V
  (1 x 1, ``d_h -> c_out``) both sparse;
* ``doped``      – sparse full-rank ``S`` plus a rank-``r`` product ``V(U x)``: in the paper variant
  ``y = V(U x) + σ(S x)`` with ``σ`` = BN + ReLU on the sparse path and U, V dense (paper §2.3,
  App. C.2, Table 7 "with non-linearity"); in the official one ``y = S x + V(U x)`` with U, V masked
  like ``S`` (spec §1.5, §6.1).

Each module declares its sparse tensors with :func:`sift_train.sparse_params.mark_sparse`; at ``s = 0``
nothing is sparse. ``s = 0`` recovers the dense layer: wide (k = 1), parallel (K = 1) and doped (r = 0)
degenerate to the layer itself, whose weights seed the full-rank weight (the widened layer, branch 0,
``S``); a factorization at ``s = 0`` would be a lossy rank-``d_h`` bottleneck, so ``factorized`` returns
the dense layer there.

Grouped convolutions are transformed group by group (each group is a dense ``c_in/g -> c_out/g``
layer): branches keep ``groups``; U and V of Factorized/Doped are grouped convs with ``g`` times the
per-group rank. Depthwise convolutions (one input channel per group) are left to the model: their
FLOPs are a small part of a depthwise-separable block and a rank or branch rule has nothing to act on
(one input per output); :func:`sift_train.sparse_ift` keeps them dense.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from .sparse_params import mark_sparse
from .widths import (
    check_family,
    check_sparsity,
    check_variant,
    doped_rank,
    factorized_rank,
    parallel_branches,
    wide_width,
)

ModuleFactory = Callable[[int], nn.Module]


class ParallelSum(nn.Module):
    """Sparse Parallel: ``y = sum_i branches[i](x)`` (spec §1.3)."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class Factorized(nn.Module):
    """Sparse Factorized: ``y = V(mid(U x))`` with ``mid`` = norm + ReLU (spec §1.4)."""

    def __init__(self, U: nn.Module, mid: nn.Module, V: nn.Module):
        super().__init__()
        self.U, self.mid, self.V = U, mid, V

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.V(self.mid(self.U(x)))


class Doped(nn.Module):
    """Sparse Doped: ``y = sparse_act(S x) + V(U x)``; the low-rank path is linear (spec §1.5).

    ``sparse_act`` is the paper's ``σ`` = BN + ReLU on the sparse path (paper variant) or ``None`` (the
    released code's plain sum). ``U`` and ``V`` are ``None`` at rank 0 (``s = 0``).
    """

    def __init__(self, S: nn.Module, U: nn.Module | None, V: nn.Module | None,
                 sparse_act: nn.Module | None = None):
        super().__init__()
        self.S, self.U, self.V = S, U, V
        self.sparse_act = sparse_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.S(x)
        if self.sparse_act is not None:
            out = self.sparse_act(out)
        if self.U is not None:
            out = out + self.V(self.U(x))
        return out


CONVS = (nn.Conv1d, nn.Conv2d)


def is_depthwise(layer: nn.Module) -> bool:
    """A conv with one input channel per group (and more than one group)."""
    return isinstance(layer, CONVS) and layer.groups > 1 and layer.groups == layer.in_channels


def check_transformable(layer: nn.Module, where: str = "layer") -> nn.Module:
    """Raise ``ValueError`` naming ``where`` unless ``layer`` is an ``nn.Linear`` or a non-depthwise
    ``nn.Conv1d``/``nn.Conv2d`` with zero padding."""
    if type(layer) is nn.Linear:
        return layer
    if type(layer) in CONVS:
        if is_depthwise(layer):
            raise ValueError(f"{where}: depthwise {type(layer).__name__} (groups={layer.groups}) is not "
                             f"transformed (it stays dense)")
        if layer.padding_mode != "zeros" and layer.groups > 1:
            raise ValueError(f"{where}: grouped conv with padding_mode={layer.padding_mode!r} is not supported")
        return layer
    raise ValueError(
        f"{where}: {type(layer).__name__} cannot be transformed; supported: nn.Linear, nn.Conv1d, nn.Conv2d"
    )


def fan_in(layer: nn.Module) -> int:
    """``D_in`` of the Iso-FLOP formulas: in_features, or ``k_h*k_w*c_in/groups`` for a conv (spec §1.0)."""
    return layer.weight[0].numel()


def _groups(layer: nn.Module) -> int:
    return getattr(layer, "groups", 1)


def _like(layer: nn.Module, d_in: int, d_out: int, *, pointwise: bool = False,
          bias: bool | None = None) -> nn.Module:
    """A fresh layer of ``layer``'s type, groups and device with new widths (``pointwise``: a 1x1,
    stride-1 conv)."""
    bias = layer.bias is not None if bias is None else bias
    kw = {"device": layer.weight.device, "dtype": layer.weight.dtype, "bias": bias}
    if isinstance(layer, nn.Linear):
        return nn.Linear(d_in, d_out, **kw)
    conv = type(layer)
    if pointwise:
        return conv(d_in, d_out, 1, groups=layer.groups, **kw)
    return conv(d_in, d_out, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                groups=layer.groups, padding_mode=layer.padding_mode, **kw)


def default_mid_norm(layer: nn.Module) -> ModuleFactory:
    """Norm inside Factorized: ``BatchNorm1d`` for Linear on ``(B, D)`` and Conv1d, ``BatchNorm2d`` for
    Conv2d (spec §1.4; token inputs use ``LayerNorm``, chosen by :func:`sift_train.sparse_ift`)."""
    return nn.BatchNorm2d if isinstance(layer, nn.Conv2d) else nn.BatchNorm1d


def _io_widths(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels


def _unit(module: nn.Module, layer: nn.Module, norm: ModuleFactory | None,
          act: nn.Module | None = None) -> nn.Module:
    """``module`` followed by ``norm(out width)`` and ``act``, keyed ``conv``/``linear``, ``bn``, ``act``
    so that tables read alike across families."""
    if norm is None and act is None:
        return module
    parts: list[tuple[str, nn.Module]] = [("linear" if isinstance(layer, nn.Linear) else "conv", module)]
    if norm is not None:
        parts.append(("bn", norm(_io_widths(layer)[1])))
    if act is not None:
        parts.append(("act", act))
    return nn.Sequential(OrderedDict(parts))


def transform(
    layer: nn.Linear | nn.Conv2d,
    family: str,
    s: float,
    *,
    variant: str = "paper",
    norm: ModuleFactory | None = None,
    mid_norm: ModuleFactory | None = None,
    branch_act: Callable[[], nn.Module] | None = None,
    widen_in: bool = True,
    widen_out: bool = True,
    where: str = "layer",
) -> nn.Module:
    """The Sparse-IFT member ``family`` of ``layer`` at sparsity ``s`` (spec §1.0, paper §2.3).

    ``norm(channels)`` builds the norm that follows the layer (per branch for ``parallel``);
    ``mid_norm(d_h)`` the norm between U and V of ``factorized`` (default :func:`default_mid_norm`);
    ``branch_act()`` the per-branch non-linearity of ``parallel``, applied only with
    ``variant="paper"`` (the released CIFAR code has none, spec §1.3). ``widen_in``/``widen_out`` say
    which sides ``wide`` scales. New layers live on ``layer``'s device (use ``meta`` to build cheaply).

    Raises ``ValueError`` naming ``where`` for an unsupported layer, an unknown family or variant, or
    ``s`` outside [0, 1).
    """
    check_transformable(layer, where)
    check_family(family)
    check_variant(variant)
    s = check_sparsity(s, where)
    with torch.device(layer.weight.device):  # norms and activations follow the layer's device
        return _build(layer, family, s, variant, norm, mid_norm or default_mid_norm(layer), branch_act,
                      widen_in, widen_out)


def _build(layer, family, s, variant, norm, mid_norm, branch_act, widen_in, widen_out) -> nn.Module:
    sparse = s > 0
    d_in, d_out = _io_widths(layer)

    if family == "dense" or (family == "factorized" and not sparse):
        out = copy.deepcopy(layer)
        if sparse:
            mark_sparse(out)
        return _unit(out, out, norm)

    if family == "wide":
        w_in = wide_width(d_in, s, variant) if widen_in else d_in
        w_out = wide_width(d_out, s, variant) if widen_out else d_out
        out = copy.deepcopy(layer) if (w_in, w_out) == (d_in, d_out) else _like(layer, w_in, w_out)
        if sparse:
            mark_sparse(out)
        return _unit(out, out, norm)

    if family == "parallel":
        act = branch_act if variant == "paper" else None
        branches = []
        for i in range(parallel_branches(s, variant)):
            conv = copy.deepcopy(layer) if i == 0 else _like(layer, d_in, d_out)
            if sparse:
                mark_sparse(conv)
            branches.append(_unit(conv, layer, norm, act() if act is not None else None))
        return ParallelSum(branches)

    g = _groups(layer)
    if family == "factorized":
        rank = g * factorized_rank(fan_in(layer), d_out // g, s, variant)
        U = mark_sparse(_like(layer, d_in, rank, bias=False))
        V = mark_sparse(_like(layer, rank, d_out, pointwise=True))
        mid = nn.Sequential(OrderedDict(bn=mid_norm(rank), relu=nn.ReLU(inplace=True)))
        return _unit(Factorized(U, mid, V), layer, norm)

    # doped
    rank = g * doped_rank(fan_in(layer), d_out // g, s, variant)
    S = copy.deepcopy(layer)
    if sparse:
        mark_sparse(S)
    U = V = act = None
    if rank > 0:
        U = _like(layer, d_in, rank, bias=False)
        V = _like(layer, rank, d_out, pointwise=True, bias=False)
        if variant == "official":  # the released code masks U and V too (spec §1.5, §6.1)
            mark_sparse(U)
            mark_sparse(V)
        else:  # paper §2.3: σ = BN + ReLU on the sparse path
            act = nn.Sequential(OrderedDict(bn=mid_norm(d_out), relu=nn.ReLU()))
    return _unit(Doped(S, U, V, act), layer, norm)
