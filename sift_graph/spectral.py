"""Top-two singular values of biadjacency matrices, exact in float64 and deterministic.

Spec: ``../shared/specs/metrics.md`` §4, §8, §9.2; solver choice from ``ecosystem.md`` §4.
The references take the 3rd largest ``|eig|`` of the bipartite adjacency ``[[0, B], [Bᵀ, 0]]``
(float32 ARPACK, random start). That number is σ2(B) exactly, because the adjacency spectrum is
``{±σ_i(B)} ∪ {0, …}``; so we compute σ1 ≥ σ2 of B itself.

Whole layers (:func:`top2_singular_values`):

* isolated rows/columns are dropped (they change no nonzero singular value);
* a graph with several connected components is solved per component and the values merged
  (the spectrum of a block-diagonal matrix is the union of its blocks' spectra): identical
  components then give σ1 = σ2 bit for bit, so the gap of ``lin64_blockdiag_tie`` is exactly 0;
* each component takes the cheaper of two exact routes by the cost model below (never by the
  machine): ``gram`` — the Gram matrix of the smaller side (m ≤ ``GRAM_MAX_SIDE``), formed by
  dense BLAS in row chunks (n·m² multiply-adds) or by a sparse product (Σ_rows nnz²), then LAPACK
  ``eigh`` for the top two (≈ 4/3·m³); or ``lanczos`` — Lanczos on BᵀB with full
  reorthogonalisation and a fixed start vector (≈ ``_LANCZOS_MATVECS`` mat-vecs with B and Bᵀ,
  2·nnz each), with ARPACK ``svds(k=2, tol=0)`` (``arpack``) if it does not converge. A 0/1 Gram is
  formed in float32 BLAS: its entries are integer counts < 2²⁴, so the product is exact;
* rank-deficient Grams (σ2 < ``RANK_DEFICIENT_RTOL``·σ1), where a Gram resolves σ2 only to
  ≈ √eps·σ1 (spec §8), are recomputed by dense SVD (``svd``), or ARPACK when too large.

Degree classes (:func:`top2_blocks`): every row block's Gram of its smaller side is written into
a zero-padded stack per size bucket and solved by one batched ``eigvalsh`` call per bucket.
Zero padding appends exact zero eigenvalues to a positive semi-definite Gram, so its top two
(clipped at 0, as every route does) are unchanged.

Scaling: σ(c·B) = c·σ(B). Non-0/1 matrices are divided by the power of two nearest above their
largest entry (exact in binary floating point, so every value is bit-identical to the unscaled
solve whenever that does not overflow or underflow) and the singular values multiplied back.
Weights of 1e-300 or 1e300 therefore give the same relative accuracy as weights of 1; a σ1 beyond
float64's range raises ``ValueError``.

Devices: ``device="cuda"`` forms the Grams and runs the (batched) eigensolves with torch in float64
on that device; connected components, Lanczos and the rare SVD fallback stay on the CPU.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import svds

from .bipartite import dense_rows, touched_columns
from .threads import blas_threads

__all__ = ["top2_singular_values", "top2_blocks", "record_routes", "GRAM_MAX_SIDE", "RANK_DEFICIENT_RTOL"]

#: Largest smaller side (nodes) solved through a dense Gram; above it, ARPACK on B.
#: A 4096² float64 Gram is 134 MB and its eigensolve ≈ 2-3 s; svds wins beyond (ecosystem.md §4.2).
GRAM_MAX_SIDE = 4096
#: The same limit for a Gram on an accelerator (a 16384² float64 Gram is 2 GB of device memory).
DEVICE_GRAM_MAX_SIDE = 16384
#: σ2/σ1 below which the Gram is not trusted and SVD is used (metrics.md §8: passes all 448
#: test-vector matrices at 1e-9·σ1).
RANK_DEFICIENT_RTOL = 1e-6

#: Cost model: seconds ≈ operations / rate. Rates of one core, measured on the 2-core AVX-512
#: development machine: float32 GEMM 1.2e11 and float64 GEMM 4.3e10 multiply-adds/s, LAPACK's
#: tridiagonal reduction 2e10 flop/s, scipy CSR mat-vec 1.3e9 and scipy's sparse × sparse product
#: 5e8 multiply-adds/s. Only ratios matter. On AVX2-only or ARM cores the GEMM rates are ≈ 2× lower
#: while the sparse ones stay, which moves each break-even point by ≤ 2×, where the two routes cost
#: the same within 2×: no route is ever far from the faster one.
_RATES = {"gemm32": 1.2e11, "gemm64": 4.3e10, "eig": 2e10, "spmv": 1.3e9, "spgemm": 5e8}
#: Lanczos steps (mat-vec pairs) for σ1, σ2 (60-100 measured on random layers; implicitly restarted
#: ARPACK needs 150-190), and the fixed cost of one step (reorthogonalisation, Python), in seconds.
_LANCZOS_MATVECS = 100
_LANCZOS_STEP_SECONDS = 5e-5
#: Lanczos stops when the residual bound of both top Ritz values is ≤ this·σ1·max(σ_i, RTOL·σ1)
#: (the eigenvalue σ_i² of BᵀB is then within it, so σ_i within ≈ this/2·σ1: 20× inside 1e-9·σ1);
#: after ``_LANCZOS_MAX_STEPS`` without convergence ARPACK takes over.
_LANCZOS_RTOL = 1e-10
_LANCZOS_MAX_STEPS = 400
_LANCZOS_CHECK_EVERY = 5
#: Whole-layer dense Gram products (MACs) large enough to use every core the caller allows
#: (class blocks stay single-threaded: measured 3× slower with 2 threads on a loaded 2-core box).
_THREADED_MACS = 1e10
#: Entries per dense chunk when forming a Gram or a block stack (bounds memory to ~128 MB).
_CHUNK_ENTRIES = 2**24
_MAX_DENSE_SVD_ENTRIES = 20_000_000
#: Class blocks whose smaller side exceeds this go through :func:`top2_singular_values`.
_BLOCK_MAX_SIDE = 2048
#: A size bucket of :func:`top2_blocks` holds sides in [s, max(s + 8, 1.1·s)]: padding costs at
#: most 1.1³ ≈ 1.33× the eigensolve flops of a large block, and small blocks share one call.
_BUCKET_RATIO, _BUCKET_SLACK = 1.1, 8

#: Route names taken while :func:`record_routes` is active (None: not recording).
_route_log: list[str] | None = None


@contextlib.contextmanager
def record_routes():
    """Collect the names of the solver routes taken inside the block (for benchmarks)::

        with record_routes() as routes:
            layer_metrics(mask, weight)
        # routes == ["gram-dense32", "lanczos", "blocks", ...]
    """
    global _route_log
    previous, _route_log = _route_log, []
    try:
        yield _route_log
    finally:
        _route_log = previous


def _note(route: str) -> None:
    if _route_log is not None:
        _route_log.append(route)


def _use_torch(device: str) -> bool:
    return device != "cpu"


def _fixed_v0(n: int) -> np.ndarray:
    """Deterministic Lanczos/ARPACK start vector (not ones: σ1's vector of a biregular graph)."""
    return np.random.default_rng(20230724).standard_normal(n)


def _compress(b: sp.csr_matrix) -> sp.csr_matrix:
    """Drop all-zero rows and columns; orient so that columns are the smaller side."""
    rows = np.flatnonzero(np.diff(b.indptr))
    cols = np.flatnonzero(np.bincount(b.indices, minlength=b.shape[1]))
    if len(rows) != b.shape[0] or len(cols) != b.shape[1]:
        b = b[rows][:, cols]
    if b.shape[1] > b.shape[0]:
        b = b.T.tocsr()
    b.sort_indices()
    return b


def _is_binary(b: sp.csr_matrix) -> bool:
    return max(b.shape) < 2**24 and bool(np.all(b.data == 1.0))


#: Scale exponents within ±this are left at 0: squares and sums of n ≤ 2⁶³ such terms stay far
#: inside float64's range, and scaling by a power of two would not change a single bit anyway.
_SAFE_EXPONENT = 200


def _scale_exponent(max_abs: float) -> int:
    """``e`` with ``max_abs·2⁻ᵉ`` in [0.5, 1) (dividing by 2ᵉ is exact in binary floating point),
    or 0 where no scaling is needed."""
    e = math.frexp(max_abs)[1]
    return e if abs(e) > _SAFE_EXPONENT else 0


def _unscale(s: np.ndarray, e) -> np.ndarray:
    """``s·2ᵉ``; ``ValueError`` if a singular value does not fit in float64."""
    with np.errstate(over="ignore"):
        s = np.ldexp(s, e)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"singular values overflow float64 (largest |entry| ≈ 2^{int(np.max(e))}); "
                         "rescale the weights")
    return s


def _route(b: sp.csr_matrix, binary: bool) -> str:
    """Cheapest exact route for the connected, compressed ``b`` (n × m, m ≤ n) by the cost model."""
    n, m = b.shape
    if m > GRAM_MAX_SIDE:
        return "lanczos"
    row_nnz = np.diff(b.indptr).astype(np.float64)
    dense = float(n) * m * m / _RATES["gemm32" if binary else "gemm64"]
    sparse = float(row_nnz @ row_nnz) / _RATES["spgemm"]
    eig = 4.0 / 3.0 * float(m) ** 3 / _RATES["eig"]
    lanczos = _LANCZOS_MATVECS * (2.0 * b.nnz / _RATES["spmv"] + _LANCZOS_STEP_SECONDS)
    if lanczos < min(dense, sparse) + eig:
        return "lanczos"
    if sparse < dense:
        return "gram-sparse"
    return "gram-dense32" if binary else "gram-dense64"


def _gram(b: sp.csr_matrix, route: str) -> np.ndarray:
    """``BᵀB`` (m × m, float64, dense) of the compressed matrix ``b`` (n × m, m ≤ n)."""
    n, m = b.shape
    if route == "gram-sparse":
        return (b.T @ b).toarray()
    dtype = np.float32 if route == "gram-dense32" else np.float64  # float32: exact 0/1 counts < 2²⁴
    g = np.zeros((m, m), dtype=dtype)
    rows = max(1, _CHUNK_ENTRIES // m)
    with blas_threads(None if float(n) * m * m >= _THREADED_MACS else 1):
        for start in range(0, n, rows):
            d = dense_rows(b, np.arange(start, min(start + rows, n)), dtype)
            g += d.T @ d
    return g.astype(np.float64, copy=False)


def _top2_eigvalsh(g: np.ndarray) -> np.ndarray:
    m = g.shape[0]
    ev = sla.eigh(g, eigvals_only=True, subset_by_index=[m - 2, m - 1], driver="evr")
    return np.sqrt(np.clip(ev[::-1], 0.0, None))


def _top2_svd(b: sp.csr_matrix) -> np.ndarray:
    n, m = b.shape
    if n * m <= _MAX_DENSE_SVD_ENTRIES:
        _note("svd")
        return np.linalg.svd(b.toarray(), compute_uv=False)[:2]
    return _top2_arpack(b)


def _top2_lanczos(b: sp.csr_matrix) -> np.ndarray | None:
    """σ1, σ2 of ``b`` (n × m, m ≤ n) by Lanczos on BᵀB with full reorthogonalisation and a fixed
    start vector; ``None`` if not converged in ``_LANCZOS_MAX_STEPS`` steps.

    Convergence: for the Ritz value θ_i of the j-step tridiagonal T_j with eigenvector s_i, BᵀB has an
    eigenvalue within β_j·|s_i[j]| of θ_i (Krylov-Bogoliubov bound; θ_i ≤ λ_i by interlacing). An
    unrestarted Krylov space of dimension j is the best of its size, so this needs about half the
    mat-vecs of implicitly restarted ARPACK (ncv = 40) on the same matrices.
    """
    n, m = b.shape
    steps = min(m, _LANCZOS_MAX_STEPS)
    basis = np.empty((steps + 1, m))
    v = _fixed_v0(m)
    basis[0] = v / np.linalg.norm(v)
    alpha: list[float] = []
    beta: list[float] = []
    bt = b.T  # CSC view: no transposed copy
    for j in range(steps):
        u = bt @ (b @ basis[j])
        alpha.append(float(basis[j] @ u))
        for _ in range(2):  # classical Gram-Schmidt, twice: orthogonal to working precision
            u -= basis[: j + 1].T @ (basis[: j + 1] @ u)
        beta_j = float(np.linalg.norm(u))
        if j >= 1 and ((j + 1) % _LANCZOS_CHECK_EVERY == 0 or j + 1 == steps or beta_j == 0.0):
            theta, vecs = sla.eigh_tridiagonal(np.array(alpha), np.array(beta), select="i",
                                               select_range=(j - 1, j))
            top = np.clip(theta[::-1], 0.0, None)
            bound = beta_j * np.abs(vecs[-1, ::-1])
            sigma = np.sqrt(top)
            ok = bound <= _LANCZOS_RTOL * sigma[0] * np.maximum(sigma, RANK_DEFICIENT_RTOL * sigma[0])
            rank_deficient = top[1] + bound[1] < (RANK_DEFICIENT_RTOL * sigma[0]) ** 2  # caller uses SVD
            if ok[0] and (ok[1] or rank_deficient):
                return sigma
        if beta_j == 0.0 or j + 1 == steps:
            break
        beta.append(beta_j)
        basis[j + 1] = u / beta_j
    if m <= steps and len(alpha) == m:  # the whole space: the Ritz values are the eigenvalues
        theta = sla.eigh_tridiagonal(np.array(alpha), np.array(beta), eigvals_only=True)
        return np.sqrt(np.clip(theta[::-1][:2], 0.0, None))
    return None


#: One ARPACK solve at a time: the metric code may run two Python threads (hoang2023a.py).
_ARPACK_LOCK = threading.Lock()


def _top2_arpack(b: sp.csr_matrix) -> np.ndarray:
    _note("arpack")
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


def _torch_top2_gram(b: sp.csr_matrix, device: str) -> np.ndarray:
    """Float64 Gram of the smaller side and its top-2 eigenvalues on ``device`` (torch)."""
    import torch

    n, m = b.shape
    g = torch.zeros((m, m), dtype=torch.float64, device=device)
    rows = max(1, _CHUNK_ENTRIES // m)
    for start in range(0, n, rows):
        d = torch.from_numpy(dense_rows(b, np.arange(start, min(start + rows, n)))).to(device)
        g += d.T @ d
    ev = torch.linalg.eigvalsh(g)[-2:].cpu().numpy()
    return np.sqrt(np.clip(ev[::-1], 0.0, None))


def _top2_connected(b: sp.csr_matrix, device: str) -> np.ndarray:
    n, m = b.shape
    if m == 1:
        _note("closed-form")
        return np.array([np.sqrt(b.data @ b.data), 0.0])
    binary = _is_binary(b)
    if _use_torch(device) and m <= DEVICE_GRAM_MAX_SIDE:
        _note("gram-device")
        s = _torch_top2_gram(b, device)
    else:
        route = _route(b, binary)
        _note(route)
        if route == "lanczos":
            s = _top2_lanczos(b)
            if s is None:
                return _top2_arpack(b)
        else:
            s = _top2_eigvalsh(_gram(b, route))
    if s[1] < RANK_DEFICIENT_RTOL * s[0]:
        s = _top2_svd(b)
    return s


def _components(b: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """Connected components of the bipartite graph of ``b`` (labels: rows, then columns)."""
    n, m = b.shape
    indptr = np.concatenate([b.indptr, np.full(m, b.indptr[-1], dtype=b.indptr.dtype)])
    adj = sp.csr_matrix((b.data, b.indices + n, indptr), shape=(n + m, n + m))
    return connected_components(adj, directed=True, connection="weak")


def top2_singular_values(b: sp.spmatrix | np.ndarray, *, device: str = "cpu") -> tuple[float, float]:
    """Largest two singular values ``(σ1, σ2)`` of ``b``, with multiplicity.

    Parameters
    ----------
    b : scipy.sparse matrix or ndarray
        Biadjacency (or any) matrix; converted to float64 CSR.
    device : str
        ``"cpu"`` (default) or a torch CUDA device for the Gram route (checked by the caller).

    Returns
    -------
    (float, float)
        σ1 ≥ σ2 ≥ 0. A matrix with no nonzeros gives (0, 0); a single row or column gives σ2 = 0.

    Raises
    ------
    ValueError
        σ1 does not fit in float64.
    """
    b = sp.csr_matrix(b, dtype=np.float64)
    if np.any(b.data == 0.0):
        b = b.copy()
        b.eliminate_zeros()
    if b.nnz == 0:
        return 0.0, 0.0
    b = _compress(b)
    e = 0
    if not _is_binary(b):  # solve on B/2ᵉ, max entry in [0.5, 1): exact, no overflow/underflow
        e = _scale_exponent(float(np.max(np.abs(b.data))))
    if e:
        b = sp.csr_matrix((np.ldexp(b.data, -e), b.indices, b.indptr), shape=b.shape)  # b may be the caller's
    n_comp, labels = _components(b)
    if n_comp == 1:
        s = _top2_connected(b, device)
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
            vals.extend(_top2_connected(block, device))
        s = np.sort(vals)[::-1][:2]
    s = _unscale(np.asarray(s, dtype=np.float64), e)
    return float(s[0]), float(s[1])


# ---------------------------------------------------------------- batched row blocks (degree classes)
def _buckets(sides: np.ndarray, order: np.ndarray) -> list[list[int]]:
    """Group block indices (``order``: sorted by side) into size buckets (see ``_BUCKET_RATIO``)."""
    buckets: list[list[int]] = []
    limit = -1.0
    for i in order:
        if not buckets or sides[i] > limit:
            buckets.append([])
            limit = max(sides[i] + _BUCKET_SLACK, _BUCKET_RATIO * sides[i])
        buckets[-1].append(int(i))
    return buckets


def _chunks(bucket: list[int], lens: np.ndarray, n_cols: int, side: int) -> list[list[int]]:
    """Split a bucket so that its gathered rows and its Gram stack each hold ≤ ``_CHUNK_ENTRIES``."""
    chunks: list[list[int]] = [[]]
    rows = 0
    for i in bucket:
        if chunks[-1] and ((rows + lens[i]) * n_cols > _CHUNK_ENTRIES
                           or (len(chunks[-1]) + 1) * side * side > _CHUNK_ENTRIES):
            chunks.append([])
            rows = 0
        chunks[-1].append(i)
        rows += int(lens[i])
    return chunks


def _row_exponents(b: sp.csr_matrix, binary: bool) -> np.ndarray:
    """Scale exponent of every row's largest |entry| (0 for 0/1 matrices and empty rows)."""
    if binary or b.nnz == 0:
        return np.zeros(b.shape[0], dtype=np.int64)
    nonempty = np.diff(b.indptr) > 0
    row_max = np.zeros(b.shape[0])
    row_max[nonempty] = np.maximum.reduceat(np.abs(b.data), b.indptr[:-1][nonempty])
    return np.frexp(row_max)[1].astype(np.int64)


def _block_exponent(row_exps: np.ndarray, rows: np.ndarray) -> int:
    """Scale exponent of a block (its rows' largest), 0 while no scaling is needed."""
    e = int(row_exps[rows].max())
    return e if abs(e) > _SAFE_EXPONENT else 0


def _stack_numpy(dense: np.ndarray, starts: np.ndarray, exps: np.ndarray, side: int, tall: np.ndarray) -> np.ndarray:
    """Zero-padded stack of the smaller-side Grams of the blocks, top-2 eigenvalues by one call.
    ``tall[j]``: block j has more rows than touched columns (its Gram is over those columns)."""
    stack = np.zeros((len(exps), side, side))
    for j in range(len(exps)):
        d = dense[starts[j] : starts[j + 1]]
        if exps[j]:
            d = np.ldexp(d, -int(exps[j]))
        if tall[j]:
            d = d[:, d.any(axis=0)]
            g = d.T @ d
        else:
            g = d @ d.T
        stack[j, : len(g), : len(g)] = g
    return np.linalg.eigvalsh(stack)[:, -2:]


def _stack_torch(dense: np.ndarray, starts: np.ndarray, exps: np.ndarray, side: int, tall: np.ndarray,
                 device: str) -> np.ndarray:
    """:func:`_stack_numpy` with torch on ``device``, in float64."""
    import torch

    d_all = torch.from_numpy(dense).to(device=device, dtype=torch.float64)
    stack = torch.zeros((len(exps), side, side), dtype=torch.float64, device=device)
    for j in range(len(exps)):
        d = d_all[starts[j] : starts[j + 1]]
        if exps[j]:  # two exact power-of-two factors: 2^±1074 alone would not fit in float64
            half = -int(exps[j]) // 2
            d = d * math.ldexp(1.0, half) * math.ldexp(1.0, -int(exps[j]) - half)
        if tall[j]:
            d = d[:, (d != 0).any(dim=0)]
            g = d.T @ d
        else:
            g = d @ d.T
        stack[j, : len(g), : len(g)] = g
    return torch.linalg.eigvalsh(stack)[:, -2:].cpu().numpy()


def _solve_chunk(b: sp.csr_matrix, groups: Sequence[np.ndarray], tall: np.ndarray, exps: np.ndarray, side: int,
                 binary: bool, device: str) -> np.ndarray:
    dense = dense_rows(b, np.concatenate(groups), np.float32 if binary else np.float64)
    starts = np.concatenate([[0], np.cumsum([len(g) for g in groups])])
    if _use_torch(device):
        ev = _stack_torch(dense, starts, exps, side, tall, device)
    else:
        ev = _stack_numpy(dense, starts, exps, side, tall)
    s = np.sqrt(np.clip(ev[:, ::-1], 0.0, None))
    for j in np.flatnonzero(s[:, 1] < RANK_DEFICIENT_RTOL * s[:, 0]):
        _note("svd")
        block = np.ldexp(dense[starts[j] : starts[j + 1]].astype(np.float64), -int(exps[j]))
        s[j] = np.concatenate([np.linalg.svd(block, compute_uv=False), [0.0]])[:2]
    return _unscale(s, exps[:, None])


def top2_blocks(b: sp.csr_matrix, groups: Sequence[np.ndarray], *, binary: bool = False,
                device: str = "cpu", touched: np.ndarray | None = None) -> np.ndarray:
    """``(σ1, σ2)`` of each row block ``b[rows]`` (the degree classes), shape ``(len(groups), 2)``.

    Blocks are solved through the Gram of their smaller side (columns without an entry dropped),
    batched: blocks of similar size share one zero-padded stack and one ``eigvalsh`` call. No
    component split (a class's values are compared at 1e-9·σ1). ``binary=True`` (0/1 blocks) forms
    the Grams in float32, exact for integer counts < 2²⁴; other blocks are scaled to max 1 first.
    Blocks with σ2 < ``RANK_DEFICIENT_RTOL``·σ1 are recomputed by SVD. ``touched``: the blocks'
    :func:`~sift_graph.bipartite.touched_columns`, if the caller has them.
    """
    out = np.zeros((len(groups), 2))
    if not len(groups):
        return out
    binary = binary and max(b.shape) < 2**24
    lens = np.array([len(g) for g in groups], dtype=np.int64)
    touched = touched_columns(b, groups) if touched is None else np.asarray(touched)
    sides = np.minimum(lens, touched)
    row_exps = _row_exponents(b, binary)
    exps = np.array([_block_exponent(row_exps, g) for g in groups], dtype=np.int64)
    batched = []
    for i, g in enumerate(groups):
        if sides[i] == 1:  # one row or one column: σ1 = Frobenius norm
            _note("closed-form")
            e = int(exps[i])
            out[i] = _unscale(np.array([np.linalg.norm(np.ldexp(dense_rows(b, g), -e)), 0.0]), e)
        elif sides[i] > _BLOCK_MAX_SIDE:
            out[i] = top2_singular_values(b[g], device=device)
        elif sides[i] > 1:
            batched.append(i)
    if batched:
        _note("blocks")
    order = np.array(batched, dtype=np.int64)[np.argsort(sides[batched], kind="stable")]
    for bucket in _buckets(sides, order):
        side = int(sides[bucket].max())
        for chunk in _chunks(bucket, lens, b.shape[1], side):
            out[chunk] = _solve_chunk(b, [groups[i] for i in chunk], lens[chunk] > touched[chunk], exps[chunk],
                                      side, binary, device)
    return out
