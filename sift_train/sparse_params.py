"""Which tensors of a model are sparse.

A module declares its sparse tensors with :func:`mark_sparse`; :func:`sparse_parameters` collects them
over a whole model, in module order, under their fully qualified parameter names. Everything that
masks, counts or snapshots sparse tensors goes through these two functions.
"""
from __future__ import annotations

from torch import nn

_ATTR = "_sift_sparse"


def mark_sparse(module: nn.Module, *names: str) -> nn.Module:
    """Declare the parameters ``names`` (default ``"weight"``) of ``module`` sparse; returns ``module``."""
    names = names or ("weight",)
    for name in names:
        param = getattr(module, name, None)
        if not isinstance(param, nn.Parameter) or param.dim() < 2:
            raise ValueError(
                f"{type(module).__name__}.{name}: only >= 2-D parameters can be sparse"
            )
    setattr(module, _ATTR, tuple(dict.fromkeys(getattr(module, _ATTR, ()) + names)))
    return module


def sparse_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{qualified name: parameter}`` of every declared sparse tensor, in ``named_modules()`` order."""
    out: dict[str, nn.Parameter] = {}
    for prefix, module in model.named_modules():
        for name in getattr(module, _ATTR, ()):
            out[f"{prefix}.{name}" if prefix else name] = getattr(module, name)
    return out
