"""The ``hoang2023a`` convention: Δr, Δr_imdb, λ, λ_imsg (NeurIPS 2023 code).

Rules from ``ScottHoang/dst-ram-pruning@73bb598 sparselearning/ramanujan.py`` as specified in
``../shared/specs/metrics.md`` §2.3, §3.3, §3.4 and §9:

* unweighted metrics on the mask ``M``; weighted ones on ``|W⊙M|`` whose *nonzeros* give the
  structure, isolated-node filter and degree test;
* full graph: left = outputs. Valid iff mean fan-in of the non-isolated outputs ≥ 3 and mean
  fan-out of the non-isolated inputs > 1 (exact integer form: ``E ≥ 3·n_out``, ``E > n_in``);
* degree classes of the inputs (mask degree d, k inputs): skipped if d = 0 or k < 2; kept iff
  d ≥ 3 and k·d/o > 1 (left = the class's inputs, o = outputs it touches); each term multiplied by
  the Cheeger-like factor ``max(k, o)/(k + o − 1)``.

Inputs are scipy CSR biadjacencies (n_in × n_out) from :mod:`sift_graph.bipartite` (``bw`` is
``None`` when no weight is known: weighted metrics are then NaN with reason ``no_weight``), or for
:func:`metrics_of_mask` the dense mask and a function that builds them.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import scipy.sparse as sp

from .bipartite import degree_classes, node_counts, row_block_entries, same_structure, touched_columns
from .spectral import _top2_singular_values, top2_binary_dense, top2_singular_values
from .spectral_blocks import BlockSet, top2_block_sets
from .threads import CallerRunsPool, InlineExecutor, allowed_threads, single_threaded_blas_products

__all__ = ["full_graph_score", "class_scores", "iterative_mean_score", "metrics", "metrics_of_mask"]

NAN = float("nan")


def _mixing(sigma2: float, e: int, n_l: int, n_r: int, total_nodes: int) -> float:
    """Expander-mixing value of ``ramanujan_bounds`` (ramanujan.py, metrics.md §3.3).

    ``(σ2·√(n_L n_R) − |2E − d_L·n_L·n_R/T|)/T`` with ``d_L = E/n_L`` and T the non-isolated node
    count of the whole layer's mask; ``edge_index.size(1)`` in the reference is 2E.
    """
    d_l = e / n_l
    return (sigma2 * math.sqrt(n_l * n_r) - abs(2 * e - d_l * n_l * n_r / total_nodes)) / total_nodes


def full_graph_score(bm: sp.csr_matrix, bw: sp.csr_matrix | None, *, mask_spectrum: bool = True,
                     device: str = "cpu", spectra: tuple | None = None, counts: tuple | None = None) -> dict:
    """Δr and λ of the whole layer (``Ramanujan.full_graph_score``, metrics.md §3.3).

    Returns a dict with ``delta_r``, ``lambda``, ``sigma1``, ``sigma2``, ``lambda_sigma1``,
    ``lambda_sigma2``, ``full_narc``, ``full_weighted_narc`` and ``reasons`` (list of str).
    NaN marks an undefined value. ``mask_spectrum=False`` skips the mask's eigensolve (Δr NaN).
    ``device``: where the Gram and eigensolve run (:mod:`sift_graph.spectral`). ``spectra``:
    ``(σ1, σ2)`` of the mask and of |W⊙M| already computed (:func:`metrics` solves them in a pool);
    ``counts``: the mask's :func:`~sift_graph.bipartite.node_counts`, if known.
    """
    out = dict.fromkeys(
        ["delta_r", "lambda", "sigma1", "sigma2", "lambda_sigma1", "lambda_sigma2",
         "full_narc", "full_weighted_narc"], NAN)
    reasons: list[str] = []
    e, n_in, n_out = counts or node_counts(bm)
    if e == 0:
        out["reasons"] = ["no_edges"]
        return out
    total_nodes = n_in + n_out
    if mask_spectrum:
        out["sigma1"], out["sigma2"] = spectra[0] if spectra else top2_singular_values(bm, device=device)
    if e >= 3 * n_out and e > n_in:  # left = outputs: d_L = E/n_out ≥ 3, d_R = E/n_in > 1
        if mask_spectrum:
            s2 = out["sigma2"]
            out["delta_r"] = math.sqrt(e / n_out - 1) + math.sqrt(e / n_in - 1) - s2
            out["full_narc"] = _mixing(s2, e, n_out, n_in, total_nodes)
    else:
        reasons.append("degree_rule")
    if bw is None:
        reasons.append("no_weight")
    else:
        ew, nw_in, nw_out = (e, n_in, n_out) if same_structure(bm, bw) else node_counts(bw)
        if ew:
            w_spectrum = spectra[1] if spectra else top2_singular_values(bw, device=device)
            out["lambda_sigma1"], out["lambda_sigma2"] = w_spectrum
        if ew and ew >= 3 * nw_out and ew > nw_in:
            out["lambda"] = out["lambda_sigma1"] - out["lambda_sigma2"]
            out["full_weighted_narc"] = _mixing(out["lambda_sigma2"], ew, nw_out, nw_in, total_nodes)
        elif "degree_rule" not in reasons:
            reasons.append("degree_rule_weighted")
    out["reasons"] = reasons
    return out


def class_scores(bm: sp.csr_matrix, bw: sp.csr_matrix | None, *, mask_spectrum: bool = True,
                 device: str = "cpu", executor=None, counts: tuple | None = None) -> list[dict]:
    """Per-degree-class terms of ``Ramanujan.iterative_mean_score`` (metrics.md §3.4).

    One dict per class with d ≠ 0 and k ≥ 2, in first-occurrence order: ``degree`` (d),
    ``k``, ``o``, ``cheeger``, ``delta_r`` (Δr_g, NaN if the class fails d ≥ 3, k·d > o),
    ``gap`` (λ_g = σ1 − σ2 of |W⊙M|_g, NaN if its own degree rule fails or no weight),
    ``sigma2``, ``mixing``, ``weighted_mixing``, ``d_left``, ``d_right`` (mask means),
    ``w_d_left``, ``w_d_right`` (means on the nonzeros of |W⊙M|_g), ``kept`` (in the mean),
    ``weighted_valid``. ``mask_spectrum=False`` skips the mask eigensolves (Δr_g NaN; which
    classes are kept depends only on d, k and o). All classes' spectra, mask and |W⊙M|, are solved
    together by :func:`sift_graph.spectral_blocks.top2_block_sets` (batched per stack size; ``executor``
    runs the stacks in parallel). ``counts``: the mask's :func:`~sift_graph.bipartite.node_counts`.
    """
    _, n_in, n_out = counts or node_counts(bm)
    total_nodes = n_in + n_out
    classes = [(d, idx) for d, idx in degree_classes(bm) if d != 0 and len(idx) >= 2]
    groups = [idx for _, idx in classes]
    rows = []
    touched = touched_columns(bm, groups)
    for (d, idx), o in zip(classes, touched):
        k, o = len(idx), int(o)
        rows.append({"degree": d, "k": k, "o": o, "cheeger": max(k, o) / (k + o - 1),
                     "d_left": float(d), "d_right": k * d / o, "delta_r": NAN, "sigma2": NAN,
                     "gap": NAN, "mixing": NAN, "weighted_mixing": NAN,
                     "w_d_left": NAN, "w_d_right": NAN, "kept": d >= 3 and k * d > o, "weighted_valid": False})
    kept = [i for i, rec in enumerate(rows) if rec["kept"]]
    weighted = []
    shared = bw is not None and same_structure(bm, bw)  # |W⊙M| has no kept zero weight
    if bw is not None:
        w_deg = None if shared else np.diff(bw.indptr)
        touched_w = touched if shared else touched_columns(bw, groups)
        for i, (rec, idx, ow) in enumerate(zip(rows, groups, touched_w)):
            ow = int(ow)
            if shared:  # the mask's degrees: k inputs of degree d
                ew, kw = rec["k"] * rec["degree"], rec["k"]
            else:
                ew, kw = int(w_deg[idx].sum()), int(np.count_nonzero(w_deg[idx]))
            if ew:
                rec.update(w_d_left=ew / kw, w_d_right=ew / ow)
            if ew and ew >= 3 * kw and ew > ow and rec["kept"]:
                weighted.append((i, ew, kw, ow))
    mask_blocks = kept if mask_spectrum else []
    mask_groups = [groups[i] for i in mask_blocks]
    # one structure and the same classes: the two sets' blocks sit at the same positions
    entries = (row_block_entries(bm, mask_groups)
               if shared and mask_blocks and [i for i, *_ in weighted] == mask_blocks else None)
    sets = [BlockSet(bm, mask_groups, True, [rows[i]["o"] for i in mask_blocks], entries),
            BlockSet(bw, [groups[i] for i, *_ in weighted], False, [ow for *_, ow in weighted], entries)]
    s_mask, s_w = top2_block_sets(sets, device=device, executor=executor)
    for i, s2 in zip(mask_blocks, s_mask[:, 1]):
        rec, d = rows[i], rows[i]["degree"]
        rec.update(sigma2=float(s2), delta_r=math.sqrt(d - 1) + math.sqrt(rec["d_right"] - 1) - float(s2),
                   mixing=_mixing(float(s2), rec["k"] * d, rec["k"], rec["o"], total_nodes))
    for (i, ew, kw, ow), (w1, w2) in zip(weighted, s_w):
        rows[i].update(gap=float(w1 - w2), weighted_valid=True,
                       weighted_mixing=_mixing(float(w2), ew, kw, ow, total_nodes))
    return rows


def iterative_mean_score(classes: list[dict], weighted: bool) -> dict:
    """Δr_imdb = (1/|K|) Σ_g c_g·Δr_g and λ_imsg = (1/|K|) Σ_g c_g·λ_g over kept classes K.

    Also ``narc`` / ``weighted_narc``: the mean mixing values (no factor), and ``n_subgraphs``
    = |K|. Empty K (reference: 0) gives NaN with reason ``no_valid_class``; a kept class whose
    weighted degree rule fails (reference: λ_imsg = inf) gives λ_imsg NaN with reason
    ``class_degree_rule_weighted``.
    """
    kept = [c for c in classes if c["kept"]]
    out = {"delta_r_imdb": NAN, "lambda_imsg": NAN, "narc": NAN, "weighted_narc": NAN,
           "n_subgraphs": len(kept), "reasons": []}
    if not kept:
        out["reasons"].append("no_valid_class")
        return out
    out["delta_r_imdb"] = float(np.mean([c["cheeger"] * c["delta_r"] for c in kept]))
    out["narc"] = float(np.mean([c["mixing"] for c in kept]))
    if not weighted:
        return out
    if all(c["weighted_valid"] for c in kept):
        out["lambda_imsg"] = float(np.mean([c["cheeger"] * c["gap"] for c in kept]))
        out["weighted_narc"] = float(np.mean([c["weighted_mixing"] for c in kept]))
    else:
        out["reasons"].append("class_degree_rule_weighted")
    return out


#: Layers with at least this many edges solve their spectra (whole mask, whole |W⊙M|, stacks of
#: degree-class Grams) in two threads when the caller allows two BLAS threads: sparse mat-vecs,
#: Gram products and (all but small) stacked ``eigvalsh`` release the GIL; BLAS stays single-threaded in each,
#: which is robust on a loaded machine, unlike multi-threaded BLAS on small blocks.
PARALLEL_MIN_EDGES = 100_000


def _parallel(n_edges: Callable[[], int], weighted: bool, device: str) -> bool:
    """Whether a two-thread pool pays off: a large CPU layer with a weight, two BLAS threads allowed
    (``n_edges`` is asked last: counting a dense mask is a pass over it)."""
    return device == "cpu" and weighted and allowed_threads() >= 2 and n_edges() >= max(PARALLEL_MIN_EDGES, 1)


@contextlib.contextmanager
def _pool(parallel: bool):
    """Two threads, the caller and one worker (:class:`~sift_graph.threads.CallerRunsPool`; BLAS
    single-threaded in both), or the calling thread alone."""
    if not parallel:
        yield InlineExecutor()
        return
    with CallerRunsPool(workers=1) as pool, single_threaded_blas_products():
        yield pool


def metrics(bm: sp.csr_matrix, bw: sp.csr_matrix | None, *, device: str = "cpu") -> dict:
    """All hoang2023a metrics of one layer (see :func:`sift_graph.layer_metrics`)."""
    built: Future = Future()
    built.set_result((bm, bw))
    with _pool(_parallel(lambda: bm.nnz, bw is not None, device)) as pool:
        return _metrics(bm, bw, device, pool, pool.submit(_whole_layer_spectra, None, built, device))


def metrics_of_mask(mask: np.ndarray, build: Callable[[], tuple], weighted: bool, *, device: str = "cpu") -> dict:
    """:func:`metrics` of a layer given by its dense bool ``mask`` (PyTorch layout, output channels
    first) and ``build``, which returns its biadjacencies ``(bm, bw)`` (``bw`` None iff not ``weighted``).

    With two threads, the worker starts the mask's whole-layer solve from the dense mask
    (:func:`~sift_graph.spectral.top2_binary_dense`: the same Gram and bits as from ``bm``) while the
    caller builds the biadjacencies (where that route does not apply it waits for ``bm``), then solves
    |W⊙M|'s whole layer, while the caller sets up the degree classes and solves their stacks.
    """
    if not _parallel(lambda: int(np.count_nonzero(mask)), weighted, device):
        bm, bw = build()
        return metrics(bm, bw, device=device)
    built: Future = Future()
    with _pool(True) as pool:
        spectra = pool.submit(_whole_layer_spectra, mask.reshape(mask.shape[0], -1), built, device)
        try:
            bm, bw = build()
        except BaseException as exc:
            built.set_exception(exc)
            raise
        built.set_result((bm, bw))
        return _metrics(bm, bw, device, pool, spectra)


def _whole_layer_spectra(present: np.ndarray | None, built: Future, device: str) -> tuple:
    """``((σ1, σ2) of the mask, (σ1, σ2) of |W⊙M| or None)``, one after the other in one thread: the
    mask's from the dense mask ``present`` where its route allows (before ``built``, the future of
    ``(bm, bw)``, is done), else from ``bm``. Both whole-layer solves are Python loops (Lanczos) most of
    their time: on one thread they leave the other to the class stacks, which run mostly without the
    GIL (measured 3-4 % faster on conv512 than one solve on each thread, in one process, A/B)."""
    s = None if present is None else top2_binary_dense(present)
    bm, bw = built.result()
    if s is not None:  # the dense route answers only for a connected mask
        mask, connected = (float(s[0]), float(s[1])), True
    else:
        mask, connected = _top2_singular_values(bm, device, connected=False)
    if bw is None:
        return mask, None
    # |W⊙M| of the mask's structure is connected where the mask is: no second component search
    return mask, _top2_singular_values(bw, device, connected=connected and same_structure(bm, bw))[0]


def _metrics(bm: sp.csr_matrix, bw: sp.csr_matrix | None, device: str, pool, spectra: Future) -> dict:
    """The metrics once ``spectra``, the job of :func:`_whole_layer_spectra`, is submitted."""
    counts = node_counts(bm)
    classes = [] if bm.nnz == 0 else class_scores(bm, bw, device=device, executor=pool, counts=counts)
    spectra = spectra.result()
    full = full_graph_score(bm, bw, device=device, spectra=spectra, counts=counts)
    reasons = full.pop("reasons")
    it = iterative_mean_score(classes, bw is not None)
    if bm.nnz == 0:
        it["reasons"] = []
    reasons += it.pop("reasons")
    e, n_left, n_right = counts
    out = {
        "delta_r": full["delta_r"],
        "delta_r_imdb": it["delta_r_imdb"],
        "lambda": full["lambda"],
        "lambda_imsg": it["lambda_imsg"],
        "sigma1": full["sigma1"],
        "sigma2": full["sigma2"],
        "lambda_sigma1": full["lambda_sigma1"],
        "lambda_sigma2": full["lambda_sigma2"],
        "n_left": n_left,
        "n_right": n_right,
        "n_edges": e,
        "d_left": e / n_left if n_left else NAN,
        "d_right": e / n_right if n_right else NAN,
        "n_subgraphs": it["n_subgraphs"],
        "narc": it["narc"],
        "weighted_narc": it["weighted_narc"],
        "full_narc": full["full_narc"],
        "full_weighted_narc": full["full_weighted_narc"],
    }
    out["reason"] = ";".join(dict.fromkeys(reasons))
    return out
