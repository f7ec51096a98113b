"""Sparse layers from the checkpoints of other tools (``docs/byom.md``).

Layouts read, per weight ``<p>`` (``<p>`` = ``<module>.weight``):

* sift: ``<p>_mask`` (bool) next to ``<p>``;
* ``torch.nn.utils.prune``: ``<p>_mask`` next to ``<p>_orig`` (the weight is ``orig * mask``);
* ``torch.ao.pruning`` parametrizations: ``<module>.parametrizations.weight.original``; its
  ``FakeSparsity`` mask is not in ``model.state_dict()`` (torch 2.13 saves it only in
  ``sparsifier.state_dict()["state"][<p>]["mask"]``), so it comes from ``masks=`` (a sparsifier state
  dict or ``{<p>: mask}``, found automatically in a checkpoint that holds both) or from a saved
  ``<module>.parametrizations.weight.0.mask``;
* a plain state dict without any mask: the zeros of each weight are its mask; weights without zeros
  are dense and not listed.

Weights are in PyTorch layout ``(out, in, ...)``; a Conv1d weight ``(out, in, k)`` becomes
``(out, in, k, 1)`` (the same bipartite graph). Layers stored ``(in, out, ...)`` (Hugging Face GPT-2
``Conv1D``, ``ConvTranspose``) are transposed only when named in ``transposed`` (glob patterns over
module names); a layer that looks transposed (its bias matches ``shape[1]``, not ``shape[0]``, or it has
a GPT-2 ``Conv1D`` name) and is not named there is refused with the reason (``standard`` names the ones
that are in PyTorch layout after all). Nothing is unpickled: ``.safetensors`` through safetensors,
``torch.load(weights_only=True)`` otherwise.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .validation import to_numpy

MASK_SUFFIX = "_mask"
PARAMETRIZED = ".parametrizations.weight.original"
GPT2_CONV1D = ("c_attn", "c_fc", "c_proj")  # transformers.pytorch_utils.Conv1D in GPT-2


@dataclass
class CheckpointLayers:
    """``layers``: ``{weight name: (bool mask, float weight)}``; ``skipped``: ``{name: reason}``."""

    layers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _np(x: Any, name: str = "tensor") -> np.ndarray:
    return np.asarray(to_numpy(x, name=name))


def _matches(module: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(module, p) for p in patterns)


def _sparsifier_masks(masks: Mapping | None) -> dict[str, Any]:
    if masks is None:
        return {}
    if "state" in masks and "groups" in masks:  # torch.ao.pruning BaseSparsifier.state_dict()
        return {fqn: s["mask"] for fqn, s in masks["state"].items() if "mask" in s}
    return dict(masks)


def read_layers(state_dict: Mapping[str, Any], *, masks: Mapping | None = None,
                transposed: Sequence[str] = (), standard: Sequence[str] = ()) -> CheckpointLayers:
    """Every sparse layer of ``state_dict`` (see module docstring), with the ones it cannot interpret
    in ``skipped`` by name and reason."""
    ao_masks = _sparsifier_masks(masks)
    out = CheckpointLayers()
    has_masks = bool(ao_masks) or any(k.endswith(MASK_SUFFIX) for k in state_dict)
    has_masks = has_masks or any(k.endswith(PARAMETRIZED) for k in state_dict)
    for key, value in state_dict.items():
        if key.endswith(MASK_SUFFIX) and not key.endswith(".parametrizations.weight.0.mask"):
            name = key[: -len(MASK_SUFFIX)]
            weight = state_dict.get(name, state_dict.get(name + "_orig"))
            if weight is None:
                out.skipped[name] = f"mask {key} without a weight {name} or {name}_orig"
                continue
            mask = _np(value, key)
            if name + "_orig" in state_dict and name not in state_dict:
                weight = _np(weight, name) * (mask != 0)  # torch.nn.utils.prune: weight = orig * mask
            _add(out, state_dict, name, mask, weight, transposed, standard)
        elif key.endswith(PARAMETRIZED):
            module = key[: -len(PARAMETRIZED)]
            name = module + ".weight"
            mask = ao_masks.get(name, state_dict.get(module + ".parametrizations.weight.0.mask"))
            if mask is None:
                out.skipped[name] = ("torch.ao.pruning parametrization without its mask: "
                                     "model.state_dict() does not save FakeSparsity masks; pass "
                                     "masks=sparsifier.state_dict() (or save both in one checkpoint)")
                continue
            mask = _np(mask, name + " mask")
            _add(out, state_dict, name, mask, _np(value, key) * (mask != 0), transposed, standard)
        elif not has_masks and key.endswith("weight") and getattr(value, "ndim", 0) >= 2:
            weight = _np(value, key)
            if np.issubdtype(weight.dtype, np.floating) and (weight == 0).any():
                _add(out, state_dict, key, weight != 0, weight, transposed, standard)
    return out


def _add(out: CheckpointLayers, state: Mapping[str, Any], name: str, mask: np.ndarray, weight,
         transposed: Sequence[str], standard: Sequence[str]) -> None:
    """Check one layer's layout and shapes; add it to ``out.layers`` or its reason to ``out.skipped``."""
    module = name.rpartition(".")[0]
    weight = _np(weight, name)
    if mask.shape != weight.shape:
        out.skipped[name] = f"mask shape {mask.shape} != weight shape {weight.shape}"
        return
    if weight.ndim not in (2, 3, 4):
        out.skipped[name] = f"expected a 2-D, 3-D or 4-D weight, got shape {weight.shape}"
        return
    if not np.isin(np.unique(mask), (0, 1)).all():
        out.skipped[name] = "mask is not binary (0/1)"
        return
    if _matches(module, transposed):
        weight, mask = np.swapaxes(weight, 0, 1), np.swapaxes(mask, 0, 1)
    elif not _matches(module, standard):
        bias = state.get(module + ".bias")
        n_bias = None if bias is None else _np(bias, module + ".bias").size
        if n_bias is not None and n_bias != weight.shape[0] and n_bias == weight.shape[1]:
            out.skipped[name] = (f"looks transposed: bias has {n_bias} entries = weight.shape[1] (layout "
                                 f"(in, out) as Hugging Face Conv1D or ConvTranspose); pass "
                                 f"transposed=['{module}'] to read it")
            return
        if module.rpartition(".")[2] in GPT2_CONV1D:
            out.skipped[name] = (f"a Hugging Face GPT-2 Conv1D name stores (in, out): pass "
                                 f"transposed=['{module}'], or standard=['{module}'] if it is an nn.Linear")
            return
    if weight.ndim == 3:  # Conv1d (out, in, k): the graph of (out, in, k, 1)
        weight, mask = weight[..., None], mask[..., None]
    out.layers[name] = (mask.astype(bool), weight)


def layers_from_state_dict(state_dict: Mapping[str, Any], *, masks: Mapping | None = None,
                           transposed: Sequence[str] = (),
                           standard: Sequence[str] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{weight name: (mask, weight)}`` of every sparse layer of a state dict (module docstring).

    Raises ``ValueError`` naming the first layer it cannot interpret and why (use :func:`read_layers`
    to get the others anyway).
    """
    result = read_layers(state_dict, masks=masks, transposed=transposed, standard=standard)
    if result.skipped:
        name, reason = next(iter(result.skipped.items()))
        raise ValueError(f"layer {name}: {reason}")
    return result.layers


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict | None]:
    """``(state_dict, masks or None)`` of a ``.safetensors`` file or a ``torch.save`` file of tensors and
    plain containers (``weights_only=True``); a checkpoint dict holding the state dict under
    ``state_dict``/``model``/``model_state_dict`` and ``{fqn: mask}`` under ``masks`` (the
    ``torch.ao.pruning`` masks) is unpacked. Raises ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file
            except ImportError:
                raise ValueError(f"{path}: reading .safetensors needs the safetensors package "
                                 f"(pip install 'sift[safetensors]')") from None
            return dict(load_file(str(path))), None
        import torch

        data = torch.load(path, map_location="cpu", weights_only=True)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one user-facing error
        hint = ""
        if "defaultdict" in str(exc):
            hint = ("; a torch.ao.pruning sparsifier.state_dict() holds a defaultdict, which safe loading "
                    "refuses: save {'model': model.state_dict(), 'masks': {fqn: s['mask'] for fqn, s in "
                    "sparsifier.state_dict()['state'].items()}} instead")
        raise ValueError(f"{path}: cannot read the checkpoint without unpickling arbitrary objects "
                         f"(torch.load weights_only=True failed{hint})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(data).__name__}")
    sparsifier = data.get("masks") if isinstance(data.get("masks"), Mapping) else None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(data.get(key), Mapping):
            return dict(data[key]), sparsifier
    tensors = {k: v for k, v in data.items() if hasattr(v, "shape")}
    if not tensors:
        raise ValueError(f"{path}: no tensors found (expected a state dict)")
    return tensors, sparsifier
