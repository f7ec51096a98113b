"""``layer_metrics``: every Ramanujan-graph metric of one sparse layer, under one convention."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import hoang2023a, hoang2023b
from .bipartite import layer_biadjacencies, layer_dims, masked_values_biadjacencies, structure
from .threads import metric_threads
from .validation import check_device, check_finite, check_layer_weight, check_mask

__all__ = ["layer_metrics", "masked_layer_metrics", "CONVENTIONS"]

CONVENTIONS = ("hoang2023a", "hoang2023b")


def layer_metrics(mask: Any, weight: Any = None, *, convention: str = "hoang2023a", device: str = "cpu") -> dict:
    """Ramanujan-graph metrics of one sparse layer.

    Parameters
    ----------
    mask : array_like or torch.Tensor
        Binary 0/1 (or bool) mask in PyTorch layout: Linear ``(out, in)``, Conv2d
        ``(c_out, c_in, kh, kw)``; the kernel is unrolled into ``c_in·kh·kw`` input nodes.
    weight : array_like or torch.Tensor, optional
        Weights of the same shape, masked or not (``W⊙M`` is formed here). Without it,
        hoang2023a's weighted metrics (λ, λ_imsg, …) are NaN with reason ``no_weight`` and
        hoang2023b uses the mask as the graph.
    convention : {"hoang2023a", "hoang2023b"}
        Which reference code's rules to follow (``docs/metrics.md``; spec §9.1).
    device : str
        ``"cpu"`` (default) or a CUDA device (``"cuda"``, ``"cuda:1"``): the Gram matrices and the
        batched eigensolves then run there with torch in float64 (same values within 1e-9·σ1).

    Returns
    -------
    dict
        Plain Python floats/ints, plus ``reason`` (``""`` if every metric is defined, else the
        failed rules joined by ``;``). Undefined metrics are ``nan``.

        hoang2023a: ``delta_r``, ``delta_r_imdb``, ``lambda``, ``lambda_imsg``, ``sigma1``,
        ``sigma2`` (mask), ``lambda_sigma1``, ``lambda_sigma2`` (|W⊙M|), ``n_in``, ``n_out``,
        ``n_left``/``n_right`` (non-isolated inputs/outputs), ``n_edges``, ``d_left``/``d_right``
        (mean input/output degree over non-isolated nodes), ``n_subgraphs`` (kept degree
        classes), ``narc``, ``weighted_narc`` (class means of the mixing values), ``full_narc``,
        ``full_weighted_narc``.

        hoang2023b: ``delta_r``, ``delta_r_ub``, ``delta_s``, ``delta_s_ub``, ``imdb``,
        ``imdb_norm``, ``ism``, ``ism_norm``, ``narc``, ``sigma1``, ``sigma2``, ``ep``,
        ``n_subgraphs``, ``imax_ep``, ``i_mean_ep``, ``n_in``, ``n_out``, ``n_left``,
        ``n_right``, ``n_edges``, ``d_left``, ``d_right`` (on the nonzeros of W⊙M).

    Raises
    ------
    ValueError
        Unknown convention, wrong rank, mismatched shapes, non-binary mask, NaN/inf weights, a
        tensor without values (meta device), weights whose singular values overflow float64, or a
        CUDA device without CUDA.

    Notes
    -----
    Every singular value is computed on the matrix divided by a power of two near its largest
    entry and multiplied back (σ(c·B) = c·σ(B), exact for powers of two), so weights of any finite
    magnitude give correct values: λ, λ_imsg and the σ's scale linearly with a global weight scale.
    """
    convention, device = _check_options(convention, device)
    m = check_mask(mask)
    w = None if weight is None else check_layer_weight(m, weight, finite=False)

    def build() -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
        # the pass over the weights for NaN/inf runs here, as the biadjacencies are built: with two
        # threads the worker has already started the mask's whole-layer solve
        return layer_biadjacencies(m, None if w is None else check_finite(w))

    with metric_threads():
        return _metrics(m, build, w is not None, convention, device,
                        lambda: float(np.max(np.abs(w[m]), initial=0.0)) if w is not None else 0.0)


def masked_layer_metrics(mask: np.ndarray, values: np.ndarray, *, convention: str = "hoang2023a",
                         device: str = "cpu") -> dict:
    """:func:`layer_metrics` of a layer stored as a run folder stores it (docs/run-format.md): a bool
    ``mask`` and ``values``, the weights at its nonzeros in C order. Equal to
    ``layer_metrics(mask, weight)`` for the weight that is ``values`` there and 0 elsewhere, without
    building that weight.

    Raises
    ------
    ValueError
        Not a bool mask of rank 2-4, ``values`` not a 1-D float array with one finite value per
        nonzero of the mask, or the reasons of :func:`layer_metrics`.
    """
    convention, device = _check_options(convention, device)
    m = np.asarray(mask)
    v = np.asarray(values)
    if m.dtype != np.bool_ or m.ndim not in (2, 3, 4):
        raise ValueError(f"mask: expected a bool array of rank 2-4, got {m.dtype} of shape {m.shape}")
    n_active = int(np.count_nonzero(m))
    if v.dtype.kind != "f" or v.ndim != 1 or v.size != n_active:
        raise ValueError(f"values: expected {n_active} floats (one per nonzero of the mask), "
                         f"got {v.dtype} of shape {v.shape}")
    check_finite(v, name="values")
    with metric_threads():
        return _metrics(m, lambda: masked_values_biadjacencies(m, v), True, convention, device,
                        lambda: float(np.max(np.abs(v), initial=0.0)))


def _check_options(convention: str, device: str) -> tuple[str, str]:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    return convention, check_device(device)


def _metrics(mask: np.ndarray, build: Callable[[], tuple[sp.csr_matrix, sp.csr_matrix | None]], weighted: bool,
             convention: str, device: str, largest_weight: Callable[[], float]) -> dict:
    """The metrics of one layer from its checked bool ``mask`` and ``build``, which returns its
    biadjacencies ``(bm, bw)`` (inside :func:`metric_threads`); ``largest_weight``: the largest |w|
    at the mask's nonzeros, for the overflow message."""
    n_in, n_out = layer_dims(mask.shape)
    if convention == "hoang2023a":
        out = hoang2023a.metrics_of_mask(mask, build, weighted, device=device)
    else:
        bm, bw = build()
        bs = bm if bw is None or bw.nnz == bm.nnz else structure(bw)  # |W⊙M|'s nonzeros ⊆ the mask's
        out = hoang2023b.metrics(bs, device=device)
    out = {"n_in": n_in, "n_out": n_out, **out}
    overflow = [k for k, v in out.items() if isinstance(v, float) and math.isinf(v)]
    if overflow:
        raise ValueError(f"{', '.join(overflow)} overflow float64 (largest |weight| "
                         f"{largest_weight():.3g}); rescale the weights")
    return {k: (v if isinstance(v, str) else int(v) if isinstance(v, (int, np.integer)) else float(v))
            for k, v in out.items()}
