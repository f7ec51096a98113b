"""``sparse_ift``: any PyTorch model as a Sparse-IFT member, with Iso-FLOP masks (paper §2.3, App. C.1).

Layer selection: the ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` modules that run as modules in a
forward pass on ``example_inputs`` (traced with forward hooks, in execution order); by default all but
the first and the last (paper App. C.1: first and last layers stay dense), otherwise those whose
qualified name matches one of the ``layers`` glob patterns. Never transformed, with one warning naming
them: depthwise convs (they stay dense, :mod:`sift_train.transforms`), and Linear layers whose weight
the parent uses functionally instead of calling them, e.g. ``nn.MultiheadAttention.out_proj``
(its forward never runs, so replacing it would silently do nothing).

Norms and non-linearities inside the members follow the layer kind and its input:

* convs (``(B, C, ...)`` inputs): Parallel branches get their own BatchNorm (+ ReLU in the paper
  variant), Factorized has BatchNorm + ReLU between U and V (spec §1.3, §1.4); the model's own norm
  after the layer stays where it was;
* Linear on ``(B, D)`` inputs: as the built-in MLP, Parallel branches get ReLU (paper variant),
  Factorized has BatchNorm1d + ReLU;
* Linear on token inputs ``(B, T, D)`` (any rank > 2): Factorized has LayerNorm + ReLU, because
  BatchNorm would pool statistics over positions and padding, and LayerNorm is the transformer's own
  per-token norm; Parallel branches are plain sparse linears without norm or activation, because a
  per-branch ReLU would make attention projections non-negative and the block's own norms already
  follow.

Mask density: every declared sparse tensor gets the same mask sparsity, chosen (and then adjusted by a
few entries per tensor) so that :func:`sift_train.count_flops` of the result equals that of the dense
model to 1e-6 relative (paper App. A.2); ``family="dense"`` is plain sparse training at ``sparsity``.
"""
from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .accounting import LayerShape
from .flops import as_inputs, count_flops, traced_forward, weight_flops
from .isoflop import MaskPlan, plan_from_shapes
from .masking import MASK_SUFFIX, random_masks
from .sparse_params import mark_sparse, sparse_parameters
from .transforms import CONVS, default_mid_norm, is_depthwise, transform
from .widths import check_family, check_sparsity, check_variant, wide_multiplier

TRANSFORMABLE = (nn.Linear, *CONVS)
ISO_FLOP_RTOL = 1e-6  # paper App. A.2: "0.0001 %"


def sparse_ift(model: nn.Module | Callable[[float], nn.Module], family: str, sparsity: float,
               example_inputs, *, layers: Sequence[str] | None = None, variant: str = "paper",
               seed: int = 0) -> nn.Module:
    """A new model in which the selected layers are replaced by their Sparse-IFT ``family`` member at
    nominal ``sparsity``, with bool mask buffers ``<param>_mask`` at the Iso-FLOP mask density.

    Parameters
    ----------
    model : nn.Module, or for ``family="wide"`` a factory ``width_multiplier -> nn.Module``
        Sparse Wide changes coupled widths (a layer's output is the next one's input, heads, residual
        streams) that cannot be inferred from an arbitrary module, so the model builds itself at a
        width multiplier: ``factory(1.0)`` is the dense model, ``factory(k)`` the wide one with
        ``k = sqrt(1/(1-s))`` (``variant="official"``: ``sqrt(round(1/(1-s)))``). The other families
        deep-copy ``model`` (it is not modified).
    family : {"dense", "wide", "parallel", "factorized", "doped"}
    sparsity : float in [0, 1)
    example_inputs : tensor or tuple of positional arguments
        One forward pass on them traces the execution order and the FLOPs.
    layers : list of glob patterns over module names, optional
        e.g. ``["blocks.*.mlp.*"]``; default every Linear/Conv layer but the first and last executed.
    variant : {"paper", "official"}
        Size rules of :mod:`sift_train.widths` and the member forms of :mod:`sift_train.transforms`.
    seed : int
        Seed of the random initial masks (exact active counts).

    Raises
    ------
    ValueError
        Bad family/variant/sparsity, a ``layers`` pattern that matches no transformable layer, a model
        that is not a module (or not a factory for ``wide``), or an Iso-FLOP target out of reach.
    """
    check_family(family)
    check_variant(variant)
    s = check_sparsity(sparsity, "sparse_ift")
    inputs = as_inputs(example_inputs)
    if family == "wide":
        if isinstance(model, nn.Module) or not callable(model):
            raise ValueError("sparse_ift: family='wide' needs a factory width_multiplier -> nn.Module "
                             "(e.g. lambda k: MyNet(width=round(64 * k))), not a module")
        dense, new = _build(model, 1.0), _build(model, wide_multiplier(s, variant))
    else:
        if not isinstance(model, nn.Module):
            raise ValueError(f"sparse_ift: model must be an nn.Module, got {type(model).__name__}")
        dense, new = model, copy.deepcopy(model)
    selected = select_layers(new, inputs, layers)
    if s == 0:
        return new
    for name, (layer, rank) in selected.items():
        if family in ("dense", "wide"):
            mark_sparse(layer)
        else:
            _replace(new, name, _member(layer, family, s, variant, rank, name))
    replaced = family not in ("dense", "wide")
    if replaced and any(isinstance(m, nn.TransformerEncoderLayer) for m in new.modules()):
        warnings.warn("sparse_ift: nn.TransformerEncoderLayer's fused inference path reads linear1.weight "
                      "directly; call torch.backends.mha.set_fastpath_enabled(False) before evaluating "
                      "the transformed model", stacklevel=2)
    try:
        plan = iso_flop_plan(new, inputs, count_flops(dense, inputs), family=family, sparsity=s)
    except ValueError as exc:
        raise ValueError(f"sparse_ift: no mask density makes this model Iso-FLOP ({exc}); the unmasked "
                         f"part is the dense first/last layers, every op without a sparse weight "
                         f"(attention products, weights used functionally such as "
                         f"nn.MultiheadAttention.in_proj_weight) and the low-rank terms") from None
    if plan.rel_error > ISO_FLOP_RTOL and family != "dense":
        warnings.warn(f"sparse_ift: FLOPs {plan.flops} vs dense {plan.dense_flops} (relative "
                      f"{plan.rel_error:.2e}): the cheapest sparse weight entry costs more than the gap",
                      stacklevel=2)
    attach_masks(new, plan.active, seed)
    return new


def _build(factory: Callable[[float], nn.Module], k: float) -> nn.Module:
    model = factory(k)
    if not isinstance(model, nn.Module):
        raise ValueError(f"sparse_ift: the factory returned {type(model).__name__}, not an nn.Module")
    return model


def trace_layers(model: nn.Module, inputs: tuple) -> dict[str, tuple[nn.Module, int]]:
    """``{name: (layer, input rank)}`` of the Linear/Conv modules run by one forward pass, in execution
    order (one forward pass under :func:`~sift_train.flops.traced_forward`)."""
    order: dict[str, tuple[nn.Module, int]] = {}
    handles = []
    for name, module in model.named_modules():
        if type(module) in TRANSFORMABLE:
            def record(mod, args, name=name):
                order.setdefault(name, (mod, args[0].dim()))
            handles.append(module.register_forward_pre_hook(record))
    try:
        with traced_forward(model):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return order


def select_layers(model: nn.Module, inputs: tuple,
                  layers: Sequence[str] | None) -> dict[str, tuple[nn.Module, int]]:
    """The layers to transform (see module docstring); warns about the ones left out and why."""
    run = trace_layers(model, inputs)
    if layers is None:
        names = list(run)[1:-1]
    else:
        patterns = [layers] if isinstance(layers, str) else list(layers)
        candidates = [n for n, m in model.named_modules() if isinstance(m, TRANSFORMABLE)]
        for p in patterns:
            if not any(fnmatch.fnmatchcase(n, p) for n in candidates):
                raise ValueError(f"sparse_ift: layers pattern {p!r} matches no Linear/Conv1d/Conv2d module")
        names = [n for n in candidates if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    skipped = {}
    for name, module in model.named_modules():
        if isinstance(module, TRANSFORMABLE) and name not in run and (layers is None or name in names):
            skipped[name] = (f"{type(module).__name__} whose forward never runs (its parent uses the "
                             f"weight directly)")
    selected = {}
    for name in names:
        if name not in run:
            continue
        layer, rank = run[name]
        if is_depthwise(layer):
            skipped[name] = "depthwise conv (stays dense)"
        else:
            selected[name] = (layer, rank)
    if skipped:
        warnings.warn("sparse_ift: not transformed: " + "; ".join(f"{n}: {r}" for n, r in skipped.items()),
                      stacklevel=3)
    return selected


def _member(layer: nn.Module, family: str, s: float, variant: str, rank: int, where: str) -> nn.Module:
    """The Sparse-IFT member of one layer, with norms chosen by layer kind and input rank."""
    if isinstance(layer, nn.Linear):
        tokens = rank > 2
        return transform(layer, family, s, variant=variant,
                         mid_norm=nn.LayerNorm if tokens else nn.BatchNorm1d,
                         branch_act=None if tokens else nn.ReLU, where=where)
    norm = default_mid_norm(layer) if family == "parallel" else None  # BatchNorm by conv rank
    return transform(layer, family, s, variant=variant, norm=norm,
                     branch_act=lambda: nn.ReLU(inplace=True), where=where)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, module)


def iso_flop_plan(model: nn.Module, inputs: tuple, dense_flops: int, *, family: str,
                  sparsity: float) -> MaskPlan:
    """Active counts of ``model``'s sparse tensors whose :func:`~sift_train.count_flops` is closest to
    ``dense_flops`` (the Iso-FLOP search of :mod:`sift_train.isoflop` on the measured per-entry cost
    of each sparse weight); nominal ``sparsity`` for ``family="dense"``."""
    params = sparse_parameters(model)
    total, per = weight_flops(model, inputs, list(params))
    fixed = total - sum(per.values())
    shapes = [LayerShape(name=n, kind="Linear", weight_numel=p.numel(), params=p.numel(),
                         out_numel=per[n] // (2 * p.numel()), positions=per[n] // (2 * p.numel()),
                         bias=False, sparse_name=n) for n, p in params.items()]
    shapes.append(_fixed("unmasked ops", fixed))
    return plan_from_shapes(shapes, [_fixed("dense model", dense_flops)], family=family,
                            sparsity=sparsity, variant="paper", rtol=ISO_FLOP_RTOL)


def _fixed(name: str, flops: int) -> LayerShape:
    """A pseudo-layer costing exactly ``flops`` 2xMAC FLOPs (``2 * (flops // 2)`` + a bias add if odd)."""
    return LayerShape(name=name, kind="Linear", weight_numel=flops // 2, params=0, out_numel=flops % 2,
                      positions=1, bias=bool(flops % 2), sparse_name=None)


def attach_masks(model: nn.Module, active: dict[str, int], seed: int) -> None:
    """Register bool ``<param>_mask`` buffers with exactly ``active[name]`` random active entries and zero
    the weights where the mask is off (on the ``meta`` device: shape-only masks, for planning)."""
    params = sparse_parameters(model)
    shapes = {n: tuple(p.shape) for n, p in params.items() if not p.is_meta}
    masks = random_masks(shapes, {}, torch.Generator().manual_seed(seed), counts=active)
    for name, p in params.items():
        prefix, _, attr = name.rpartition(".")
        if p.is_meta:
            mask = torch.empty(p.shape, dtype=torch.bool, device="meta")
        else:
            mask = masks[name].to(p.device)
        model.get_submodule(prefix).register_buffer(attr + MASK_SUFFIX, mask)
        with torch.no_grad():
            p.mul_(mask)
