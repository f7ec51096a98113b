"""``layer_metrics``: every Ramanujan-graph metric of one sparse layer, under one convention."""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from . import hoang2023a, hoang2023b
from .bipartite import csc_structure, layer_dims
from .spectral import metric_threads
from .validation import check_layer

__all__ = ["layer_metrics", "layer_biadjacencies", "CONVENTIONS"]

CONVENTIONS = ("hoang2023a", "hoang2023b")


def layer_biadjacencies(mask: np.ndarray, weight: np.ndarray | None) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """CSR biadjacencies (n_in × n_out, float64) of the mask and of ``|W⊙M|`` (nonzeros only).

    ``mask`` is a checked ``bool`` array, ``weight`` a checked float array of the same shape or
    None. Built from the mask's nonzeros only: the dense tensor is never copied to float64.
    """
    n_in, n_out = layer_dims(mask.shape)
    flat, cols, indptr = csc_structure(mask.reshape(n_out, n_in))
    bm = sp.csc_matrix((np.ones(len(flat)), cols, indptr), shape=(n_in, n_out)).tocsr()
    if weight is None:
        return bm, None
    vals = np.abs(weight.reshape(-1)[flat]).astype(np.float64)
    bw = sp.csc_matrix((vals, cols, indptr), shape=(n_in, n_out)).tocsr()
    bw.eliminate_zeros()
    return bm, bw


def layer_metrics(mask: Any, weight: Any = None, *, convention: str = "hoang2023a") -> dict:
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
        Unknown convention, wrong rank, mismatched shapes, non-binary mask, NaN/inf weights.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    m, w = check_layer(mask, weight)
    n_in, n_out = layer_dims(m.shape)
    with metric_threads():
        bm, bw = layer_biadjacencies(m, w)
        if convention == "hoang2023a":
            out = hoang2023a.metrics(bm, bw)
        else:
            bs = bm if bw is None else sp.csr_matrix((np.ones(bw.nnz), bw.indices, bw.indptr), shape=bw.shape)
            out = hoang2023b.metrics(bs)
    out = {"n_in": n_in, "n_out": n_out, **out}
    return {k: (v if isinstance(v, str) else int(v) if isinstance(v, (int, np.integer)) else float(v))
            for k, v in out.items()}
