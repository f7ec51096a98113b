"""Forward FLOPs of any model, with sparse tensors counted at their active entries.

Built on ``torch.utils.flop_counter.FlopCounterMode``: every op it has a formula for (matmuls,
convolutions, attention, ...) is counted as 2 x multiply-accumulates; element-wise ops, norms,
softmax and bias additions count 0 (its convention). A masked weight (a ``<param>_mask`` buffer next
to an ``nn.Linear`` / ``nn.Conv*`` weight: sift masks and ``torch.nn.utils.prune``) costs its layer's
dense FLOPs times ``active / numel``, exact because a linear or conv op costs ``2 * positions * numel``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MASKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@contextlib.contextmanager
def traced_forward(model: nn.Module):
    """Eval mode (modes restored after), no grad, and PyTorch's fused ``nn.TransformerEncoderLayer``
    inference path off, so that every Linear runs as a module and as ops FlopCounterMode knows."""
    modes = {m: m.training for m in model.modules()}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, mode in modes.items():
            m.training = mode


def as_inputs(example_inputs) -> tuple:
    """``example_inputs`` as a tuple of positional arguments (a single tensor becomes a 1-tuple)."""
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def weight_flops(model: nn.Module, example_inputs, weights: list[str]) -> tuple[int, dict[str, int]]:
    """Dense forward FLOPs of ``model`` on ``example_inputs`` and, for each qualified weight name in
    ``weights``, the FLOPs of the calls of the module owning it (what that weight costs dense).

    Runs one forward pass under :func:`traced_forward`.
    Raises ``ValueError`` naming the weight if its module is not a Linear/Conv layer.
    """
    owners: dict[nn.Module, str] = {}
    for name in weights:
        prefix, _, _ = name.rpartition(".")
        module = model.get_submodule(prefix)
        if not isinstance(module, MASKABLE):
            raise ValueError(f"{name}: only nn.Linear/nn.Conv weights can be counted at their active "
                             f"entries, not {type(module).__name__}")
        owners[module] = name
    per: dict[str, int] = dict.fromkeys(weights, 0)
    started: dict[nn.Module, list[int]] = {}
    counter = FlopCounterMode(display=False)

    def pre(module, args):
        started.setdefault(module, []).append(counter.get_total_flops())

    def post(module, args, output):
        per[owners[module]] += counter.get_total_flops() - started[module].pop()

    handles = [h for m in owners for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    try:
        with traced_forward(model), counter:
            model(*as_inputs(example_inputs))
    finally:
        for h in handles:
            h.remove()
    return counter.get_total_flops(), per


def masked_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{qualified weight name: mask}`` for every ``<param>_mask`` buffer next to a parameter
    ``<param>`` (sift) or ``<param>_orig`` (``torch.nn.utils.prune``) of the same shape; other buffers
    ending in ``_mask`` (attention masks, ...) are not weight masks."""
    out = {}
    for prefix, module in model.named_modules():
        params = dict(module.named_parameters(recurse=False))
        for buf_name, buf in module.named_buffers(recurse=False):
            name = buf_name[: -len("_mask")]
            param = params.get(name, params.get(name + "_orig"))
            if buf_name.endswith("_mask") and param is not None and param.shape == buf.shape:
                out[f"{prefix}.{name}" if prefix else name] = buf
    return out


def sparse_total(total: int, per: Mapping[str, int], numel: Mapping[str, int],
                 active: Mapping[str, int]) -> int:
    """``total`` with each weight's dense FLOPs ``per[name]`` scaled to ``active[name] / numel[name]``."""
    out = total
    for name, flops in per.items():
        out += flops * active[name] // numel[name] - flops
    return out


def count_flops(model: nn.Module, example_inputs) -> int:
    """Forward FLOPs (2 x MAC) of ``model`` on ``example_inputs`` (a tensor or a tuple of positional
    arguments; the count is for that whole batch), with each masked weight counted at its active
    entries. See the module docstring for what is counted."""
    masks = masked_weights(model)
    total, per = weight_flops(model, example_inputs, list(masks))
    return sparse_total(total, per, {n: m.numel() for n, m in masks.items()},
                        {n: int(torch.count_nonzero(m)) for n, m in masks.items()})
