"""Input checks at the public boundary (scikit-learn style): convert, check once, fail clearly.

Internals trust what leaves this module: a 2-D or 4-D ``numpy`` array in PyTorch layout
(Linear ``(out, in)``, Conv2d ``(c_out, c_in, kh, kw)``): masks as ``bool``, weights as finite
floating point (float32 stays float32 to save memory; every metric is computed in float64).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_layer_array", "check_mask", "check_weight", "check_layer", "check_layer_weight", "check_finite", "check_device"]


def to_numpy(x: Any, *, name: str = "tensor") -> Any:
    """A torch tensor (found without importing torch) as a numpy array on the CPU: dense, and
    float32 for half precision; anything else unchanged. ``ValueError`` for a meta tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        if getattr(x, "is_meta", False):
            raise ValueError(f"{name}: a tensor on the meta device has no values (shape {tuple(x.shape)}); "
                             "materialise it (e.g. load the state dict) first")
        x = x.detach().cpu()
        if getattr(x, "is_sparse", False) or str(getattr(x, "layout", "")).startswith("torch.sparse"):
            x = x.to_dense()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    return x


def as_layer_array(x: Any, *, name: str = "tensor") -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or nested sequence) as a real ndarray.

    Raises
    ------
    ValueError
        If ``x`` is not 2-D (Linear) or 4-D (Conv2d), is complex, or cannot be converted.
    """
    x = to_numpy(x, name=name)
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - message path only
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from exc
    if arr.dtype == object or np.iscomplexobj(arr):
        raise ValueError(f"{name}: expected a real numeric tensor, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name}: expected a 2-D (Linear (out, in)), 3-D (Conv1d (c_out, c_in, k)) or 4-D "
            f"(Conv2d (c_out, c_in, kh, kw)) "
            f"tensor in PyTorch layout, got shape {tuple(arr.shape)}"
        )
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{name}: expected a real numeric tensor, got dtype {arr.dtype}")
    return arr


def check_mask(mask: Any, *, name: str = "mask") -> np.ndarray:
    """Convert and check a binary 0/1 (or boolean) mask; returns a ``bool`` array."""
    arr = as_layer_array(mask, name=name)
    if arr.dtype == np.bool_:
        return arr
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf (shape {tuple(arr.shape)})")
    bad = (arr != 0.0) & (arr != 1.0)
    if bad.any():
        first = arr[bad].flat[0].item()
        raise ValueError(
            f"{name}: expected a binary 0/1 mask, found {int(bad.sum())} other value(s), e.g. {first!r} "
            f"(shape {tuple(arr.shape)})"
        )
    return arr != 0


def check_weight(weight: Any, *, name: str = "weight", finite: bool = True) -> np.ndarray:
    """Convert and check a weight tensor: finite floating-point values (ints become float64).
    ``finite=False`` leaves the pass over the values to :func:`check_finite`."""
    arr = as_layer_array(weight, name=name)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return check_finite(arr, name=name) if finite else arr


def check_finite(arr: np.ndarray, *, name: str = "weight") -> np.ndarray:
    """``arr`` itself; ``ValueError`` naming how many NaN/inf values it holds, if any."""
    if not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name}: contains {n_bad} NaN/inf value(s) (shape {tuple(arr.shape)})")
    return arr


def check_layer(mask: Any, weight: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Check a (mask, weight) pair; the weight, if given, must have the mask's shape."""
    m = check_mask(mask)
    return m, None if weight is None else check_layer_weight(m, weight)


def check_layer_weight(m: np.ndarray, weight: Any, *, finite: bool = True) -> np.ndarray:
    """Check a weight for the checked mask ``m`` (:func:`check_weight`, and ``m``'s shape)."""
    w = check_weight(weight, finite=finite)
    if w.shape != m.shape:
        raise ValueError(
            f"mask and weight shapes differ: mask {tuple(m.shape)}, weight {tuple(w.shape)}"
        )
    return w


def check_device_name(device: Any) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (whether that device exists is not checked)."""
    name = device if isinstance(device, str) else None
    if name is None or (name not in ("cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return name


def check_device(device: Any) -> str:
    """``"cpu"`` or a usable CUDA device name (``"cuda"``, ``"cuda:N"``); ``ValueError`` otherwise."""
    name = check_device_name(str(device))
    if name == "cpu":
        return name
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA device "
                         "(torch.cuda.is_available() is False); use device='cpu'")
    if name != "cuda" and int(name[5:]) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return name
