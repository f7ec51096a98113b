"""A layer as a bipartite graph: biadjacency matrix, node labels, networkx export.

Spec: ``../shared/specs/metrics.md`` §2.1. The biadjacency is ``B = T.reshape(c_out, -1).T``:
rows are the ``n_in = c_in·kh·kw`` unrolled kernel positions (input node index
``c·kh·kw + y·kw + x``; a Conv1d ``(c_out, c_in, k)`` is the Conv2d case ``kh = 1``, node ``c·k + x``), columns are the ``n_out = c_out`` output channels. Stride, padding,
dilation and groups are ignored (the "rolled" kernel graph). The (n_in+n_out)² adjacency
``[[0, B], [Bᵀ, 0]]`` is never built: its spectrum is ``{±σ_i(B)} ∪ {0, …}`` (spec §8).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from .validation import check_layer, check_weight

__all__ = ["biadjacency", "node_labels", "to_networkx", "layer_dims", "degree_classes", "node_counts",
           "dense_rows", "row_block_entries", "same_structure", "structure", "touched_columns", "layer_biadjacencies", "masked_values_biadjacencies"]


def layer_dims(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(n_in, n_out)`` of the unrolled bipartite graph of a tensor of PyTorch ``shape``."""
    n_out = int(shape[0])
    n_in = int(np.prod(shape[1:], dtype=np.int64))
    return n_in, n_out


def _inputs_csr(present: np.ndarray, values: Callable[[np.ndarray], np.ndarray] | None) -> sp.csr_matrix:
    """B (n_in × n_out, float64 CSR, sorted indices) from ``present`` (bool, (n_out, n_in)) and
    ``values`` (maps the flat C-order positions of ``present``'s nonzeros to B's values; None: ones).

    The tensor is read in its own (output-major) order, so the gather of the values is sequential;
    scipy's CSR→CSC conversion (one counting pass in C) then turns the output-major CSR into B's
    rows. Twice as fast as transposing the dense tensor first for a 1619×1619×3×3 conv.
    """
    n_out, n_in = present.shape
    flat = np.flatnonzero(present)
    indptr = np.searchsorted(flat, np.arange(n_out + 1, dtype=np.int64) * n_in)  # row starts (flat is sorted)
    cols = flat - np.repeat(np.arange(n_out, dtype=np.int64) * n_in, np.diff(indptr))
    data = np.ones(len(flat)) if values is None else values(flat)
    t = sp.csr_matrix((data, cols, indptr), shape=(n_out, n_in)).tocsc()  # CSC of Tᵀ is CSR of B
    b = sp.csr_matrix((t.data, t.indices, t.indptr), shape=(n_in, n_out))
    b.has_sorted_indices = True
    return b


def biadjacency(tensor: Any) -> sp.csr_matrix:
    """Sparse biadjacency matrix ``B`` (n_in × n_out, float64 CSR) of a layer tensor.

    Parameters
    ----------
    tensor : array_like or torch.Tensor
        Mask, weight or masked weight in PyTorch layout: Linear ``(out, in)``, Conv1d
        ``(c_out, c_in, k)`` (taps unrolled like a Conv2d with ``kh = 1``) or Conv2d
        ``(c_out, c_in, kh, kw)``.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``B[i, j] = T[j, c, y, x]`` for input node ``i = c·kh·kw + y·kw + x`` and output ``j``;
        only nonzeros are stored (an edge iff the entry is nonzero).

    Raises
    ------
    ValueError
        Wrong rank or non-finite values.
    """
    t2d = check_weight(tensor, name="tensor")
    t2d = t2d.reshape(t2d.shape[0], -1)
    return _inputs_csr(t2d != 0, lambda flat: t2d.reshape(-1)[flat].astype(np.float64))


def node_labels(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Map graph nodes back to tensor positions.

    Returns
    -------
    inputs : ndarray of int, shape (n_in, 3)
        Row ``i`` is ``(channel, ky, kx)`` of input node ``i`` (Linear: ``(feature, 0, 0)``;
        Conv1d ``(c_out, c_in, k)``: ``(channel, 0, tap)``).
    outputs : ndarray of int, shape (n_out,)
        Output node ``j`` is output channel / feature ``j``.
    """
    if len(shape) not in (2, 3, 4):
        raise ValueError(f"expected a 2-D, 3-D or 4-D PyTorch weight shape, got {tuple(shape)}")
    c_in, kh, kw = (int(shape[1]), 1, 1) if len(shape) == 2 else (
        (int(shape[1]), 1, int(shape[2])) if len(shape) == 3 else tuple(int(s) for s in shape[1:]))
    c, y, x = np.unravel_index(np.arange(c_in * kh * kw), (c_in, kh, kw))
    return np.stack([c, y, x], axis=1), np.arange(int(shape[0]))


def to_networkx(mask: Any, weight: Any = None) -> nx.Graph:
    """The layer as an undirected ``networkx.Graph`` for exploration.

    Nodes ``0 … n_in−1`` are inputs (attribute ``bipartite=0``, ``label=(channel, ky, kx)``);
    nodes ``n_in … n_in+n_out−1`` are outputs (``bipartite=1``, ``label=channel``). Every node is
    present, isolated ones included. One edge per mask entry equal to 1, with attribute
    ``weight = |w|`` (the |W⊙M| of hoang2023a) if ``weight`` is given, else 1.0.
    For large layers prefer :func:`biadjacency`; this builds Python objects per edge.
    """
    m, w = check_layer(mask, weight)
    n_in, n_out = layer_dims(m.shape)
    values = np.abs(w * m) if w is not None else m.astype(np.float64)
    ins, outs = node_labels(m.shape)
    g = nx.Graph()
    g.add_nodes_from((i, {"bipartite": 0, "label": tuple(int(v) for v in ins[i])}) for i in range(n_in))
    g.add_nodes_from((n_in + j, {"bipartite": 1, "label": int(j)}) for j in range(n_out))
    rows2d = m.reshape(n_out, -1)
    vals2d = values.reshape(n_out, -1)
    j_idx, i_idx = np.nonzero(rows2d)
    g.add_weighted_edges_from(
        (int(i), n_in + int(j), float(vals2d[j, i])) for j, i in zip(j_idx, i_idx)
    )
    return g


def node_counts(b: sp.csr_matrix) -> tuple[int, int, int]:
    """``(n_edges, n_left, n_right)``: stored entries and non-isolated rows / columns of ``b``."""
    n_left = int(np.count_nonzero(np.diff(b.indptr)))
    n_right = int(np.count_nonzero(np.bincount(b.indices, minlength=b.shape[1])))
    return int(b.nnz), n_left, n_right


def degree_classes(b: sp.csr_matrix) -> list[tuple[int, np.ndarray]]:
    """Input nodes grouped by exact degree (spec §3.2, §3.4): ``[(d, row_indices), ...]``.

    Classes are listed in order of first occurrence in input-index order, like the references'
    ``collections.Counter``; rows within a class are increasing. Degree 0 is included (the
    conventions skip it).
    """
    deg = np.diff(b.indptr)
    values, first = np.unique(deg, return_index=True)
    order = np.argsort(deg, kind="stable")
    bounds = np.searchsorted(deg[order], values)
    bounds = np.append(bounds, len(deg))
    classes = [(int(values[i]), order[bounds[i] : bounds[i + 1]]) for i in range(len(values))]
    return [classes[i] for i in np.argsort(first, kind="stable")]


def _row_entries(b: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``b.indices``/``b.data`` of the entries of ``rows`` (in order), and per-row counts."""
    starts = b.indptr[rows]
    lengths = b.indptr[rows + 1] - starts
    total = int(lengths.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)
    return offsets, lengths


def row_block_entries(b: sp.csr_matrix, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries of the row blocks ``b[rows]`` of every group, gathered straight from the CSR arrays:
    their positions in each block's dense ``len(rows) × n_cols`` array (C order), their positions in
    ``b.data`` (so ``b.data[…]`` are their values, for ``b`` and any matrix of its structure), and
    each block's slice bounds in those two arrays (no sparse objects: degree classes are many and
    small)."""
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    rows = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]) if len(groups) else sizes
    offsets, lengths = _row_entries(b, rows)
    row_in_block = np.arange(len(rows)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    flat = np.repeat(row_in_block * b.shape[1], lengths) + b.indices[offsets]
    row_bounds = np.concatenate([[0], np.cumsum(lengths)])
    return flat, offsets, row_bounds[np.concatenate([[0], np.cumsum(sizes)])]


def dense_rows(b: sp.csr_matrix, rows: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``b[rows]`` as a dense array (len(rows) × n_cols) (:func:`row_block_entries` of one block)."""
    out = np.zeros((len(rows), b.shape[1]), dtype=dtype)
    flat, offsets, _ = row_block_entries(b, [rows])
    out.reshape(-1)[flat] = b.data[offsets]
    return out


def same_structure(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    """Whether two CSR matrices store entries at the same positions (shared index arrays: at once)."""
    if a.shape != b.shape or a.nnz != b.nnz:
        return False
    return ((a.indptr is b.indptr or np.array_equal(a.indptr, b.indptr))
            and (a.indices is b.indices or np.array_equal(a.indices, b.indices)))


def touched_columns(b: sp.csr_matrix, groups: list[np.ndarray]) -> np.ndarray:
    """Number of distinct columns holding a stored entry of each row group ``b[rows]`` (the o_g of
    a degree class, metrics.md §3.2), for all groups in one vectorised pass."""
    out = np.zeros(len(groups), dtype=np.int64)
    n_cols = b.shape[1]
    per_chunk = max(1, 2**26 // max(n_cols, 1))  # bounds the (groups × columns) bool table to 64 MB
    for c0 in range(0, len(groups), per_chunk):
        chunk = groups[c0 : c0 + per_chunk]
        rows = np.concatenate(chunk)
        offsets, lengths = _row_entries(b, rows)
        group_of = np.repeat(np.repeat(np.arange(len(chunk)), [len(g) for g in chunk]), lengths)
        seen = np.zeros((len(chunk), n_cols), dtype=bool)
        seen.reshape(-1)[group_of * n_cols + b.indices[offsets]] = True
        out[c0 : c0 + len(chunk)] = np.count_nonzero(seen, axis=1)
    return out


def layer_biadjacencies(mask: np.ndarray, weight: np.ndarray | None) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """CSR biadjacencies (n_in × n_out, float64) of the mask and of ``|W⊙M|`` (nonzeros only).

    ``mask`` is a checked ``bool`` array, ``weight`` a checked float array of the same shape or
    None. Weights are gathered at the mask's nonzeros only, never copied whole to float64.
    """
    n_in, n_out = layer_dims(mask.shape)
    present = mask.reshape(n_out, n_in)
    if weight is None:
        return _inputs_csr(present, None), None
    flat_weight = weight.reshape(-1)
    return _split(_inputs_csr(present, lambda flat: np.abs(flat_weight[flat]).astype(np.float64)))


def masked_values_biadjacencies(mask: np.ndarray, values: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """:func:`layer_biadjacencies` of the weight that is ``values`` at the mask's nonzeros (in C order,
    as a run folder stores it: docs/run-format.md) and 0 elsewhere, without building that weight."""
    n_in, n_out = layer_dims(mask.shape)
    return _split(_inputs_csr(mask.reshape(n_out, n_in), lambda flat: np.abs(values).astype(np.float64)))


def structure(b: sp.csr_matrix) -> sp.csr_matrix:
    """``b``'s stored entries as ones (0/1 CSR sharing ``b``'s index arrays)."""
    ones = sp.csr_matrix((np.ones(b.nnz), b.indices, b.indptr), shape=b.shape)
    ones.has_sorted_indices = b.has_sorted_indices
    return ones


def _split(bw: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The mask's biadjacency (B's structure, ones) and ``|W⊙M|`` (kept weights of exactly 0 are no edge)."""
    n_in, n_out = bw.shape
    bm = structure(bw)
    if not np.all(bw.data):
        bw = sp.csr_matrix((bw.data, bw.indices.copy(), bw.indptr.copy()), shape=(n_in, n_out))
        bw.eliminate_zeros()
        bw.has_sorted_indices = True
    return bm, bw
