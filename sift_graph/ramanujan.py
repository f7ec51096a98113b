"""The four Ramanujan-graph metrics as functions of one layer (hoang2023a convention).

For every metric at once, its validity reason and the hoang2023b variants use
:func:`sift_graph.layer_metrics`. Notation (``../shared/specs/metrics.md`` §3): B is the layer's
n_in × n_out biadjacency (:func:`sift_graph.biadjacency`), σ1 ≥ σ2 its top singular values
(= the largest and the "non-trivial" eigenvalue μ̂ of the bipartite adjacency), E its edges,
d_out = E/n_out and d_in = E/n_in the mean degrees over non-isolated outputs / inputs.
"""
from __future__ import annotations

from typing import Any

from . import hoang2023a
from .bipartite import layer_biadjacencies
from .threads import metric_threads
from .validation import check_layer

__all__ = ["delta_r", "delta_r_imdb", "spectral_gap", "spectral_gap_imsg"]


def _graphs(mask: Any, weight: Any):
    m, w = check_layer(mask, weight)
    return layer_biadjacencies(m, w)


def delta_r(mask: Any) -> float:
    r"""Ramanujan gap Δr of the layer's mask graph.

    .. math:: \Delta r = \sqrt{d_{out} - 1} + \sqrt{d_{in} - 1} - \sigma_2(B_M)

    The bipartite (biregular) Ramanujan bound minus the non-trivial eigenvalue; > 0 means the
    graph is at least as good an expander as a Ramanujan graph of the same mean degrees. It equals
    the ``2√(d−1) − μ̂`` of Sparse-IFT (Thangarasa et al. 2024, §3.1) when d_in = d_out.

    Parameters
    ----------
    mask : array_like or torch.Tensor
        Binary mask in PyTorch layout (Linear ``(out, in)``, Conv2d ``(c_out, c_in, kh, kw)``).

    Returns
    -------
    float
        Δr, or ``nan`` when the layer has no edges or fails hoang2023a's degree rule
        (d_out ≥ 3 and d_in > 1; the reference returns ``inf``).

    Raises
    ------
    ValueError
        Wrong rank or non-binary mask.

    References
    ----------
    .. [1] Hoang, Kundu, Liu, Wang, "Don't just prune by magnitude! Your mask topology is a secret
       weapon", NeurIPS 2023; code ``ScottHoang/dst-ram-pruning@73bb598``
       ``sparselearning/ramanujan.py`` ``full_graph_score`` (key ``full_imdb``).
    .. [2] Hoang, Liu, Marculescu, Wang, "Revisiting pruning at initialization through the lens of
       Ramanujan graph", ICLR 2023 (``rm``; same value on the same structure).
    """
    bm, _ = _graphs(mask, None)
    with metric_threads():
        return float(hoang2023a.full_graph_score(bm, None)["delta_r"])


def delta_r_imdb(mask: Any) -> float:
    r"""Iterative mean Ramanujan gap Δr_imdb over the degree classes of the inputs.

    .. math:: \Delta r_{imdb} = \frac{1}{|K|} \sum_{g \in K} c_g \left(\sqrt{d_g - 1}
              + \sqrt{k_g d_g / o_g - 1} - \sigma_2(B_{M,g})\right),
              \qquad c_g = \frac{\max(k_g, o_g)}{k_g + o_g - 1}

    Class g = the k_g inputs of mask degree exactly d_g (with the o_g outputs they reach). K holds
    the classes with d_g ≠ 0, k_g ≥ 2, d_g ≥ 3 and k_g d_g / o_g > 1 (hoang2023a rules); c_g is
    the reference code's Cheeger-like factor, absent from the Sparse-IFT formula.

    Returns
    -------
    float
        Δr_imdb, or ``nan`` when K is empty (the reference returns 0) or the layer has no edges.

    References
    ----------
    .. [1] Hoang et al., NeurIPS 2023; ``sparselearning/ramanujan.py`` ``iterative_mean_score``
       (key ``imdb``). Sparse-IFT (Thangarasa et al., ICML 2024) §3.1.
    """
    bm, _ = _graphs(mask, None)
    with metric_threads():
        classes = hoang2023a.class_scores(bm, None)
        return float(hoang2023a.iterative_mean_score(classes, weighted=False)["delta_r_imdb"])


def spectral_gap(mask: Any, weight: Any) -> float:
    r"""Weighted spectral gap λ of the layer.

    .. math:: \lambda = \sigma_1(|W \odot M|) - \sigma_2(|W \odot M|)

    The graph (and its degree rule d_out ≥ 3, d_in > 1) is the nonzeros of |W⊙M|.

    Parameters
    ----------
    mask, weight : array_like or torch.Tensor
        Binary mask and weights of the same PyTorch-layout shape (weights masked or not).

    Returns
    -------
    float
        λ, or ``nan`` when the weighted graph is empty or fails the degree rule (reference: inf).

    References
    ----------
    .. [1] Hoang et al., NeurIPS 2023; ``full_graph_score`` (key ``full_weighted_imdb``).
       Sparse-IFT (Thangarasa et al., ICML 2024) §3.1: λ = μ0(|W|) − μ̂(|W|).
    """
    bm, bw = _graphs(mask, weight)
    with metric_threads():
        return float(hoang2023a.full_graph_score(bm, bw, mask_spectrum=False)["lambda"])


def spectral_gap_imsg(mask: Any, weight: Any) -> float:
    r"""Iterative mean spectral gap λ_imsg over the degree classes of the inputs.

    .. math:: \lambda_{imsg} = \frac{1}{|K|} \sum_{g \in K} c_g \left(\sigma_1(|W \odot M|_g)
              - \sigma_2(|W \odot M|_g)\right)

    K and c_g as in :func:`delta_r_imdb` (classes formed and kept on the **mask**). Each term's
    own degree rule is checked on the nonzeros of |W⊙M|_g.

    Returns
    -------
    float
        λ_imsg, or ``nan`` when K is empty (reference: 0) or a kept class fails its weighted
        degree rule (reference: inf).

    References
    ----------
    .. [1] Hoang et al., NeurIPS 2023; ``iterative_mean_score`` (key ``weighted_imdb``).
       Sparse-IFT (Thangarasa et al., ICML 2024) §3.1.
    """
    bm, bw = _graphs(mask, weight)
    with metric_threads():
        classes = hoang2023a.class_scores(bm, bw, mask_spectrum=False)
        return float(hoang2023a.iterative_mean_score(classes, weighted=True)["lambda_imsg"])
