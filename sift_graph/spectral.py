"""Top-two singular values of a biadjacency matrix, exact in float64 and deterministic.

Spec: ``../shared/specs/metrics.md`` §4, §8, §9.2; solver choice from ``ecosystem.md`` §4.
The references take the 3rd largest ``|eig|`` of the bipartite adjacency ``[[0, B], [Bᵀ, 0]]``
(float32 ARPACK, random start). That number is σ2(B) exactly, because the adjacency spectrum is
``{±σ_i(B)} ∪ {0, …}``; so we compute σ1 ≥ σ2 of B itself:

* isolated rows/columns are dropped (they change no nonzero singular value);
* a graph with several connected components is solved per component and the values merged
  (the spectrum of a block-diagonal matrix is the union of its blocks' spectra): identical
  components then give σ1 = σ2 bit for bit, so the gap of ``lin64_blockdiag_tie`` is exactly 0;
* up to ``GRAM_MAX_SIDE`` nodes on the smaller side: the Gram matrix of the smaller side,
  formed sparse (cost Σ_rows nnz²) or by dense BLAS in row chunks (cost n_big·m²), whichever the
  cost model says is cheaper, then a dense symmetric eigensolve of the top two eigenvalues.
  A 0/1 Gram is formed by int8 GEMM (``torch._int_mm``, int32 accumulation) or float32 BLAS:
  its entries are integer counts < 2²⁴, so either result is exact, and 2-6× faster than float64;
* rank-deficient blocks (σ2 < ``RANK_DEFICIENT_RTOL``·σ1), where a Gram resolves σ2 only to
  ≈ √eps·σ1 (spec §8), are recomputed by SVD;
* larger smaller sides, and weighted (non-0/1) matrices whose float64 Gram would cost more than
  ``_ARPACK_MIN_FLOAT_GRAM_MACS`` multiply-adds: ``svds(k=2, solver="arpack", tol=0)`` with a fixed
  start vector.
"""
from __future__ import annotations

import contextlib
import platform
import threading

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import svds
from threadpoolctl import ThreadpoolController

from .bipartite import dense_rows

__all__ = ["top2_singular_values", "top2_dense", "blas_threads", "metric_threads", "GRAM_MAX_SIDE", "RANK_DEFICIENT_RTOL"]

#: Largest smaller side (nodes) solved through a dense Gram; above it, ARPACK on B.
#: A 4096² float64 Gram is 134 MB and its eigensolve ≈ 2-3 s; svds wins beyond (ecosystem.md §4.2).
GRAM_MAX_SIDE = 4096
#: σ2/σ1 below which the Gram is not trusted and SVD is used (metrics.md §8: passes all 448
#: test-vector matrices at 1e-9·σ1).
RANK_DEFICIENT_RTOL = 1e-6
#: Measured on the 2-core (AVX-512) dev machine: scipy's sparse matmul ≈ 0.22 GMAC/s, OpenBLAS
#: dgemm ≈ 45 GMAC/s per core; dense wins when it needs < 150× the sparse multiply-adds.
_DENSE_SPEEDUP = 150.0
#: Whole-layer dense Gram products (MACs) large enough to use every core the caller allows
#: (class blocks stay single-threaded: measured 3× slower with 2 threads on a loaded 2-core box).
_THREADED_MACS = 1e10
#: 0/1 Grams of at least this many multiply-adds use the int8 GEMM; its chunks hold this many entries.
_INT_GEMM_MIN_MACS = 1e8
_INT_GEMM_CHUNK_ENTRIES = 2**25
#: Rows per dense chunk when forming a Gram with BLAS (bounds memory to chunk·m·8 bytes).
_CHUNK_ROWS = 2048
#: Smaller sides at or below this use numpy's full eigvalsh; above, LAPACK evr for the top 2 only.
_FULL_EIG_MAX = 256
_MAX_DENSE_SVD_ENTRIES = 20_000_000
#: Weighted (non-0/1) matrices whose float64 Gram needs at least this many multiply-adds go to
#: ARPACK instead: the |W| of a 14571 × 1619 conv at 10 % density (3.8e10 MACs) took 1.04 s by Gram +
#: eigh and 0.64 s by ``svds`` on the dev machine, equal to 2e-13; 0/1 Grams stay on the (int8) GEMM.
_ARPACK_MIN_FLOAT_GRAM_MACS = 2e10

_CONTROLLER = ThreadpoolController()
#: BLAS threads a large product may use inside :func:`metric_threads` (the caller's own limit).
_allowed_threads = 1


def _current_blas_threads() -> int:
    counts = [lib["num_threads"] for lib in _CONTROLLER.info() if lib.get("user_api") == "blas"]
    return max(counts, default=1)


@contextlib.contextmanager
def metric_threads():
    """Run metric code with single-threaded BLAS; large dense Gram products may go back up to the
    thread count the caller had (so a worker pinned to 1 thread by its caller stays at 1).

    Many small eigenproblems run far slower with >1 BLAS thread on a loaded 2-core machine
    (ecosystem.md §4.4).
    """
    global _allowed_threads
    previous, _allowed_threads = _allowed_threads, _current_blas_threads()
    try:
        with _CONTROLLER.limit(limits=1):
            yield
    finally:
        _allowed_threads = previous


def allowed_threads() -> int:
    """BLAS threads the caller of :func:`metric_threads` allowed (1 outside it)."""
    return _allowed_threads


@contextlib.contextmanager
def single_threaded_blas_products():
    """Keep large Gram products single-threaded too (while two Python threads share the cores)."""
    global _allowed_threads
    previous, _allowed_threads = _allowed_threads, 1
    try:
        yield
    finally:
        _allowed_threads = previous


def blas_threads(n: int | None = 1):
    """Context manager limiting BLAS/OpenMP threads to ``n`` (``None``: as many as the caller of
    :func:`metric_threads` allowed)."""
    return _CONTROLLER.limit(limits=_allowed_threads if n is None else n)


def _fixed_v0(n: int) -> np.ndarray:
    """Deterministic ARPACK start vector (not ones: that is σ1's vector of a biregular graph)."""
    return np.random.default_rng(20230724).standard_normal(n)


def _compress(b: sp.csr_matrix) -> sp.csr_matrix:
    """Drop all-zero rows and columns; orient so that columns are the smaller side."""
    b = b.tocsr()
    rows = np.flatnonzero(np.diff(b.indptr))
    cols = np.flatnonzero(np.bincount(b.indices, minlength=b.shape[1]))
    if len(rows) != b.shape[0] or len(cols) != b.shape[1]:
        b = b[rows][:, cols]
    if b.shape[1] > b.shape[0]:
        b = b.T.tocsr()
    b.sort_indices()
    return b


def _gram(b: sp.csr_matrix) -> np.ndarray:
    """``BᵀB`` (m × m, float64, dense) of the compressed matrix ``b`` (n × m, m ≤ n)."""
    n, m = b.shape
    row_nnz = np.diff(b.indptr).astype(np.float64)
    sparse_cost = float(row_nnz @ row_nnz)
    dense_cost = float(n) * m * m
    if dense_cost > _DENSE_SPEEDUP * sparse_cost:
        return (b.T @ b).toarray()
    binary = _is_binary(b)
    if binary and dense_cost >= _INT_GEMM_MIN_MACS:
        g = _int8_gram(b)
        if g is not None:
            return g
    dtype = np.float32 if binary else np.float64
    g = np.zeros((m, m), dtype=dtype)
    with blas_threads(None if dense_cost >= _THREADED_MACS else 1):
        for start in range(0, n, _CHUNK_ROWS):
            d = dense_rows(b, np.arange(start, min(start + _CHUNK_ROWS, n)), dtype)
            g += d.T @ d
    return g.astype(np.float64, copy=False)


def _is_binary(b: sp.csr_matrix) -> bool:
    return b.shape[0] < 2**24 and bool(np.all(b.data == 1.0))


def _int8_gram(b: sp.csr_matrix) -> np.ndarray | None:
    """Exact ``BᵀB`` of a 0/1 matrix by int8 × int8 → int32 GEMM (``torch._int_mm``), ≈ 3× faster
    than float32 BLAS on this machine; counts < 2²⁴ ≪ 2³¹. ``None`` if torch cannot do it."""
    if platform.machine().lower() not in ("x86_64", "amd64"):  # oneDNN int8 kernels checked on x86 only
        return None
    try:
        import torch

        n, m = b.shape
        g = torch.zeros((m, m), dtype=torch.int32)
        rows = max(1, _INT_GEMM_CHUNK_ENTRIES // m)
        for start in range(0, n, rows):
            d = torch.from_numpy(dense_rows(b, np.arange(start, min(start + rows, n)), np.int8))
            g += torch._int_mm(d.T.contiguous(), d)
        return g.numpy().astype(np.float64)
    except (ImportError, AttributeError, RuntimeError):  # no torch, or no CPU int8 GEMM
        return None


def _top2_eigvalsh(g: np.ndarray) -> np.ndarray:
    m = g.shape[0]
    if m <= _FULL_EIG_MAX:
        ev = np.linalg.eigvalsh(g)[-2:]
    else:  # single-threaded: LAPACK's tridiagonalisation slows down badly with 2 threads under load
        ev = sla.eigh(g, eigvals_only=True, subset_by_index=[m - 2, m - 1], driver="evr")
    return np.sqrt(np.clip(ev[::-1], 0.0, None))


def _top2_svd(b: sp.csr_matrix) -> np.ndarray:
    n, m = b.shape
    if n * m <= _MAX_DENSE_SVD_ENTRIES:
        s = np.linalg.svd(b.toarray(), compute_uv=False)
        return s[:2]
    return _top2_arpack(b)


#: One ARPACK solve at a time: the metric code may run two Python threads (hoang2023a.py).
_ARPACK_LOCK = threading.Lock()


def _top2_arpack(b: sp.csr_matrix) -> np.ndarray:
    m = b.shape[1]
    with _ARPACK_LOCK:
        s = svds(
            b,
            k=2,
            ncv=min(40, m),  # 20 → 40 against clustered spectra (scipy#26112, ecosystem.md §4.4)
            tol=0,
            v0=_fixed_v0(m),
            solver="arpack",
            return_singular_vectors=False,
        )
    return np.sort(s)[::-1]


def _components(b: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """Connected components of the bipartite graph of ``b`` (labels: rows, then columns)."""
    n, m = b.shape
    indptr = np.concatenate([b.indptr, np.full(m, b.indptr[-1], dtype=b.indptr.dtype)])
    adj = sp.csr_matrix((b.data, b.indices + n, indptr), shape=(n + m, n + m))
    return connected_components(adj, directed=True, connection="weak")


def _top2_connected(b: sp.csr_matrix) -> np.ndarray:
    n, m = b.shape
    if m == 1:
        return np.array([np.sqrt(b.data @ b.data), 0.0])
    if m > GRAM_MAX_SIDE or (float(n) * m * m >= _ARPACK_MIN_FLOAT_GRAM_MACS and not _is_binary(b)):
        return _top2_arpack(b)
    s = _top2_eigvalsh(_gram(b))
    if s[1] < RANK_DEFICIENT_RTOL * s[0]:
        s = _top2_svd(b)
    return s


def top2_singular_values(b: sp.spmatrix | np.ndarray) -> tuple[float, float]:
    """Largest two singular values ``(σ1, σ2)`` of ``b``, with multiplicity.

    Parameters
    ----------
    b : scipy.sparse matrix or ndarray
        Biadjacency (or any) matrix; converted to float64 CSR.

    Returns
    -------
    (float, float)
        σ1 ≥ σ2 ≥ 0. A matrix with no nonzeros gives (0, 0); a single row or column gives σ2 = 0.
    """
    b = sp.csr_matrix(b, dtype=np.float64)
    if np.any(b.data == 0.0):
        b = b.copy()
        b.eliminate_zeros()
    if b.nnz == 0:
        return 0.0, 0.0
    b = _compress(b)
    n_comp, labels = _components(b)
    if n_comp == 1:
        s = _top2_connected(b)
    else:
        n = b.shape[0]
        row_lab, col_lab = labels[:n], labels[n:]
        row_order = np.argsort(row_lab, kind="stable")
        col_order = np.argsort(col_lab, kind="stable")
        row_cut = np.searchsorted(row_lab[row_order], np.arange(n_comp + 1))
        col_cut = np.searchsorted(col_lab[col_order], np.arange(n_comp + 1))
        vals = []
        for c in range(n_comp):
            rows = row_order[row_cut[c] : row_cut[c + 1]]
            cols = col_order[col_cut[c] : col_cut[c + 1]]
            block = b[rows][:, cols]
            if block.shape[1] > block.shape[0]:
                block = block.T.tocsr()
            vals.extend(_top2_connected(block))
        s = np.sort(vals)[::-1][:2]
    return float(s[0]), float(s[1])


def top2_dense(d: np.ndarray, *, binary: bool = False) -> tuple[float, float]:
    """``(σ1, σ2)`` of a small dense block (a degree class): Gram of the smaller side + eigvalsh,
    SVD when rank-deficient. No component split: a class's values are compared at 1e-9·σ1.
    ``binary=True`` (a 0/1 block) forms the Gram in float32 BLAS, exact for integer counts < 2²⁴.
    """
    d = d[d.any(axis=1)][:, d.any(axis=0)]
    if d.size == 0:
        return 0.0, 0.0
    if min(d.shape) == 1:
        return float(np.sqrt(np.sum(np.square(d, dtype=np.float64)))), 0.0
    k, o = d.shape
    x = d.astype(np.float32 if binary and max(k, o) < 2**24 else np.float64, copy=False)
    g = (x @ x.T if k <= o else x.T @ x).astype(np.float64, copy=False)  # 1 thread: many small blocks
    s = _top2_eigvalsh(g)
    if s[1] < RANK_DEFICIENT_RTOL * s[0]:
        s = np.linalg.svd(d.astype(np.float64, copy=False), compute_uv=False)[:2]
    return float(s[0]), float(s[1])
