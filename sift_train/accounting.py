"""Parameter and forward-FLOP accounting of (sparse) models, per layer and per model.

Two FLOP conventions (spec ``sparse-ift.md`` §3.1, §5), both per sample (batch 1):

* **2xMAC** (:func:`forward_flops`, the project's ``flops``): over ``nn.Conv2d``/``nn.Linear`` layers,
  ``2 * active weights * output positions`` plus one add per output element for a bias. BatchNorm,
  activations, pooling, residual and branch sums are not counted. Dense CIFAR ResNet-18 = 1,110,937,700.
* **profiler** (:func:`profiler_flops`): the cbsparse profiler of the released code (PROF:394-545):
  conv ``mults = numel(W)*HW``, ``adds = (numel(W)-1)*HW`` (a sparse weight of density ``d`` gives
  ``int(adds*d) + int(mults*d)``); linear the same with ``HW = 1`` plus ``out`` bias adds; BatchNorm
  ``2C(HW-1) + 2CHW`` adds, ``3CHW`` mults and ``C`` sqrt; ``nn.ReLU`` modules ``numel(out)``. Dense
  CIFAR ResNet-18 = 1,115,226,800, the code's hard-coded ``flop_budget`` (LAUNCH:25).

Parameter counts: *total* = all parameters (BN γ/β included, buffers excluded); *sparse* = numel of the
tensors declared sparse (:func:`sift_train.sparse_params.sparse_parameters`); *active* = total - sparse
+ the active entries of the sparse tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .counts import active_count
from .sparse_params import sparse_parameters
from .widths import check_sparsity

_BN = nn.modules.batchnorm._BatchNorm
_KINDS = {"Conv2d": nn.Conv2d, "Conv1d": nn.Conv1d, "Linear": nn.Linear, "BatchNorm": _BN,
          "ReLU": nn.ReLU}


@dataclass(frozen=True)
class LayerShape:
    """What accounting needs of one module, from one traced forward pass."""

    name: str
    kind: str  # Conv2d, Linear, BatchNorm, ReLU
    weight_numel: int  # 0 for ReLU
    params: int  # parameters held directly by the module
    out_numel: int  # elements of the output for one sample
    positions: int  # out_numel / channels: spatial positions (1 for a linear layer on a vector)
    bias: bool
    sparse_name: str | None  # qualified name of the weight when it is declared sparse


@dataclass(frozen=True)
class LayerCount:
    """One row of the per-layer table."""

    name: str
    kind: str
    sparse: bool
    params: int
    active_params: int
    positions: int
    macs: int
    flops: int  # 2xMAC convention
    profiler_flops: int


@dataclass(frozen=True)
class ModelCounts:
    total_params: int
    sparse_params: int
    active_params: int
    macs: int
    flops: int
    profiler_flops: int


def trace(model: nn.Module, in_shape: tuple[int, ...]) -> list[LayerShape]:
    """Shapes of every Conv2d/Linear/BatchNorm/ReLU module of ``model`` for one input of ``in_shape``.

    Runs one forward pass in eval mode on the model's device (free for a ``meta`` model) and restores
    every module's mode. Raises ``ValueError`` naming the module if a module holding parameters has no
    FLOP rule, runs twice per forward, or a sparse tensor is not a Conv2d/Linear weight.
    """
    sparse_ids = {id(p): name for name, p in sparse_parameters(model).items()}
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    shapes: dict[str, LayerShape] = {}
    hooks = []

    def hook(name: str):
        def record(mod, inputs, output):
            if name in shapes:
                raise ValueError(f"{name}: module runs more than once per forward; not supported")
            kind = next(k for k, cls in _KINDS.items() if isinstance(mod, cls))
            w = getattr(mod, "weight", None)
            if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
                channels = output.shape[1]
            elif isinstance(mod, nn.Linear):
                channels = mod.out_features
            elif isinstance(mod, _BN):
                channels = mod.num_features
            else:
                channels = output[0].numel()
            out_numel = output[0].numel()
            shapes[name] = LayerShape(
                name=name, kind=kind,
                weight_numel=w.numel() if isinstance(w, torch.Tensor) else 0,
                params=sum(p.numel() for p in mod.parameters(recurse=False)),
                out_numel=out_numel, positions=out_numel // channels,
                bias=getattr(mod, "bias", None) is not None,
                sparse_name=sparse_ids.get(id(w)) if isinstance(w, nn.Parameter) else None,
            )
        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, _BN, nn.ReLU)):
            hooks.append(module.register_forward_hook(hook(name)))
        elif any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"{name}: {type(module).__name__} holds parameters but has no FLOP rule")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *in_shape), device=device))
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    covered = {s.sparse_name for s in shapes.values()}
    for name in sparse_ids.values():
        if name not in covered:
            raise ValueError(f"{name}: sparse tensor is not the weight of a Conv2d/Linear run in forward")
    order = [name for name, _ in model.named_modules() if name in shapes]
    return [shapes[name] for name in order]


def active_counts(model: nn.Module, sparsity: float | dict[str, float],
                  variant: str = "paper") -> dict[str, int]:
    """``{sparse tensor: active_count(numel, s, variant)}`` for a uniform ``sparsity`` or one per tensor
    (spec §5; the rule is :func:`sift_train.counts.active_count`)."""
    out = {}
    for name, p in sparse_parameters(model).items():
        s = check_sparsity(sparsity[name] if isinstance(sparsity, dict) else sparsity, name)
        out[name] = active_count(p.numel(), s, variant)
    return out


def _profiler(layer: LayerShape, density: float) -> int:
    """cbsparse profiler FLOPs of one module at weight density ``density`` (PROF:394-545)."""
    pos, numel = layer.positions, layer.weight_numel
    if layer.kind == "ReLU":
        return layer.out_numel
    if layer.kind == "BatchNorm":
        c = layer.out_numel // pos
        return 2 * c * (pos - 1) + 2 * layer.out_numel + 3 * layer.out_numel + c
    mults = numel * pos
    # conv: one add fewer per output position (not per output element); linear: per output element
    adds = (numel - 1) * pos if layer.kind in ("Conv1d", "Conv2d") else (numel - layer.out_numel // pos) * pos
    out = mults + adds if density == 1.0 else int(adds * density) + int(mults * density)
    return out + (layer.out_numel if layer.bias else 0)


def count_layers(shapes: list[LayerShape], active: dict[str, int] | None = None,
                 density: dict[str, float] | None = None) -> list[LayerCount]:
    """Per-layer counts from traced ``shapes``; ``active`` = active entries per sparse tensor (missing or
    ``None``: dense). ``density`` overrides the profiler's density ``count/numel`` per tensor (the
    released code's search sees the expected density ``1 - s`` of Bernoulli masks)."""
    active = active or {}
    density = density or {}
    rows = []
    for layer in shapes:
        name = layer.sparse_name
        n_active = active.get(name, layer.weight_numel) if name else layer.weight_numel
        if not 0 <= n_active <= layer.weight_numel:
            raise ValueError(f"{name}: active count {n_active} outside [0, {layer.weight_numel}]")
        weighted = layer.kind in ("Conv1d", "Conv2d", "Linear")
        macs = n_active * layer.positions if weighted else 0
        flops = 2 * macs + (layer.out_numel if weighted and layer.bias else 0)
        d = density.get(name, n_active / layer.weight_numel) if name else 1.0
        rows.append(LayerCount(
            name=layer.name, kind=layer.kind, sparse=name is not None, params=layer.params,
            active_params=layer.params - layer.weight_numel + n_active if name else layer.params,
            positions=layer.positions, macs=macs, flops=flops, profiler_flops=_profiler(layer, d),
        ))
    return rows


def totals(model: nn.Module, rows: list[LayerCount]) -> ModelCounts:
    """Model totals; parameters are counted over ``model.parameters()`` so nothing is missed."""
    total = sum(p.numel() for p in model.parameters())
    sparse = sum(p.numel() for p in sparse_parameters(model).values())
    inactive = sum(r.params - r.active_params for r in rows)
    return ModelCounts(
        total_params=total, sparse_params=sparse, active_params=total - inactive,
        macs=sum(r.macs for r in rows), flops=sum(r.flops for r in rows),
        profiler_flops=sum(r.profiler_flops for r in rows),
    )


def layer_table(model: nn.Module, in_shape: tuple[int, ...],
                active: dict[str, int] | None = None) -> list[LayerCount]:
    """Per-layer parameter and FLOP counts (see module docstring). ``active``: active entries per sparse
    tensor (names as in ``sparse_parameters``, e.g. from :func:`active_counts`; ``None`` = dense)."""
    if active is not None:
        unknown = set(active) - set(sparse_parameters(model))
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a sparse tensor of the model")
    return count_layers(trace(model, in_shape), active)


def model_counts(model: nn.Module, in_shape: tuple[int, ...],
                 active: dict[str, int] | None = None) -> ModelCounts:
    return totals(model, layer_table(model, in_shape, active))


def forward_flops(model: nn.Module, in_shape: tuple[int, ...], active: dict[str, int] | None = None) -> int:
    """Forward FLOPs per sample, 2xMAC convention (spec §5); ``active`` as in :func:`layer_table`."""
    return model_counts(model, in_shape, active).flops


def profiler_flops(model: nn.Module, in_shape: tuple[int, ...], active: dict[str, int] | None = None) -> int:
    """Forward FLOPs per sample in the released code's profiler convention (spec §3.1)."""
    return model_counts(model, in_shape, active).profiler_flops

