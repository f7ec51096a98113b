"""The ``hoang2023b`` convention: Δr (``rm``), Δs (``sm``), IMDB (``irm``, ``irm_norm``), NaRC.

Rules from ``VITA-Group/ramanujan-on-pai@ec1d583 lib/graphs/scores.py`` as specified in
``../shared/specs/metrics.md`` §2.2, §3.1, §3.2 and §9:

* the graph is the nonzeros of ``W⊙M`` (a kept weight that is exactly 0 is no edge); edge
  weights are never used, so there is no weighted metric;
* full graph: left = inputs; valid iff both mean degrees (over non-isolated nodes) are ≥ 3;
* degree classes of the inputs (degree d, count c): skipped if c < 3 or d = 0; valid iff d ≥ 3
  and c·d/o ≥ 3 (o = outputs the class touches); no Cheeger factor.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .bipartite import degree_classes, node_counts, touched_columns
from .spectral import top2_singular_values
from .spectral_blocks import top2_blocks

__all__ = ["ramanujan_score", "class_scores", "iterative_mean_spectral_gap", "metrics"]

NAN = float("nan")


def _delta_s(sigma1: float, sigma2: float) -> tuple[float, float]:
    """``sm = 2√(σ1−1) − σ2`` and ``sm_ub = 2√(σ1−1)`` (``delta_s``, scores.py:30-37)."""
    ub = 2.0 * math.sqrt(sigma1 - 1.0)
    return ub - sigma2, ub


def ramanujan_score(bs: sp.csr_matrix, *, device: str = "cpu") -> dict:
    """``scores.ramanujan_score`` of the whole layer (metrics.md §3.1); NaN where it gives None.

    ``sigma1``/``sigma2`` are reported whenever the layer has edges (the reference leaves them
    None when the degree rule fails).
    """
    keys = ["delta_r", "delta_r_ub", "delta_s", "delta_s_ub", "sigma1", "sigma2", "ep", "narc"]
    out: dict = dict.fromkeys(keys, NAN)
    e, n_l, n_r = node_counts(bs)
    if e == 0:
        out["reasons"] = ["no_edges"]
        return out
    out["sigma1"], out["sigma2"] = s1, s2 = top2_singular_values(bs, device=device)
    if not (e >= 3 * n_l and e >= 3 * n_r):
        out["reasons"] = ["degree_rule"]
        return out
    d_l, d_r = e / n_l, e / n_r
    n_in, n_out = bs.shape
    ub = math.sqrt(d_l - 1) + math.sqrt(d_r - 1)
    out["delta_s"], out["delta_s_ub"] = _delta_s(s1, s2)
    out["delta_r"], out["delta_r_ub"] = ub - s2, ub
    out["ep"] = n_r / n_l
    # random_bound (scores.py:49-70): "total_edges" = 2E; dim_in/dim_out are the unfiltered sizes.
    out["narc"] = ((s2**2 / 4 + 1) * math.sqrt(n_l * n_r) - abs(2 * e - d_l / n_out * n_l * n_r)) / (
        n_in * n_out
    )
    out["reasons"] = []
    return out


def class_scores(bs: sp.csr_matrix, *, device: str = "cpu") -> list[dict]:
    """One dict per subgraph of ``find_d_left_regular`` (count ≥ 3, degree ≠ 0), in order of first
    occurrence: ``degree``, ``count``, ``o``, ``valid``, and if valid ``delta_r``, ``delta_r_ub``,
    ``delta_s``, ``delta_s_ub``, ``sigma1``, ``sigma2``, ``ep`` (= o/count). Spectra of all valid
    subgraphs are solved together by :func:`sift_graph.spectral_blocks.top2_blocks`."""
    classes = [(d, idx) for d, idx in degree_classes(bs) if len(idx) >= 3 and d != 0]
    groups = [idx for _, idx in classes]
    rows = []
    for (d, idx), o in zip(classes, touched_columns(bs, groups)):
        c, o = len(idx), int(o)
        rows.append({"degree": d, "count": c, "o": o, "valid": bool(d >= 3 and c * d >= 3 * o)})
    valid = [i for i, rec in enumerate(rows) if rec["valid"]]
    if valid:
        for i, (s1, s2) in zip(valid, top2_blocks(bs, [groups[i] for i in valid], binary=True, device=device,
                                                 touched=[rows[i]["o"] for i in valid])):
            rec = rows[i]
            d, c, o = rec["degree"], rec["count"], rec["o"]
            s1, s2 = float(s1), float(s2)
            ub = math.sqrt(d - 1) + math.sqrt(c * d / o - 1)
            sm, sm_ub = _delta_s(s1, s2)
            rec.update(sigma1=s1, sigma2=s2, delta_r=ub - s2, delta_r_ub=ub,
                       delta_s=sm, delta_s_ub=sm_ub, ep=o / c)
    return rows


def iterative_mean_spectral_gap(classes: list[dict]) -> dict:
    """``scores.iterative_mean_spectral_gap`` (metrics.md §3.2): means over valid subgraphs.

    ``imdb`` = mean Δr_g (``irm``), ``imdb_norm`` = mean Δr_g/ub_g (``irm_norm``), ``ism``,
    ``ism_norm`` likewise for Δs, ``n_subgraphs``, ``imax_ep``/``i_mean_ep`` = max/mean o/c.
    No valid subgraph: NaN (reference: None) and reason ``no_valid_class``.
    """
    valid = [c for c in classes if c["valid"]]
    keys = ["imdb", "imdb_norm", "ism", "ism_norm", "imax_ep", "i_mean_ep"]
    out: dict = dict.fromkeys(keys, NAN)
    out["n_subgraphs"] = len(valid)
    if not valid:
        out["reasons"] = ["no_valid_class"]
        return out
    col = {k: np.array([c[k] for c in valid]) for k in ("delta_r", "delta_r_ub", "delta_s", "delta_s_ub", "ep")}
    out.update(
        imdb=float(col["delta_r"].mean()),
        imdb_norm=float((col["delta_r"] / col["delta_r_ub"]).mean()),
        ism=float(col["delta_s"].mean()),
        ism_norm=float((col["delta_s"] / col["delta_s_ub"]).mean()),
        imax_ep=float(col["ep"].max()),
        i_mean_ep=float(col["ep"].mean()),
        reasons=[],
    )
    return out


def metrics(bs: sp.csr_matrix, *, device: str = "cpu") -> dict:
    """All hoang2023b metrics of one layer with structure ``bs`` (see :func:`sift_graph.layer_metrics`)."""
    full = ramanujan_score(bs, device=device)
    reasons = full.pop("reasons")
    it = iterative_mean_spectral_gap(class_scores(bs, device=device))
    if "no_edges" in reasons:  # an empty layer reports only no_edges
        it["reasons"] = []
    reasons += it.pop("reasons")
    e, n_left, n_right = node_counts(bs)
    out = {**full, **it, "n_left": n_left, "n_right": n_right, "n_edges": e,
           "d_left": e / n_left if n_left else NAN, "d_right": e / n_right if n_right else NAN}
    out["reason"] = ";".join(dict.fromkeys(reasons))
    return out
