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
  dense BLAS in row chunks (n·m² multiply-adds, ``syrk``) or by a sparse product (Σ_rows nnz²),
  then its top two eigenvalues by LAPACK ``dsyevr`` (:mod:`sift_graph.lapack`, ≈ 4/3·m³) or by Lanczos on the dense Gram
  (≈ ``_LANCZOS_MATVECS`` mat-vecs of m² each), whichever costs less; or ``lanczos`` — Lanczos on
  BᵀB (two sparse mat-vecs per step, 2·nnz each), with ARPACK ``svds(k=2, tol=0)`` (``arpack``)
  if it does not converge. A 0/1 Gram is formed in float32 BLAS: its entries are integer counts
  < 2²⁴, so the product is exact;
* Lanczos (:func:`_lanczos`) uses full reorthogonalisation and a fixed start vector, and stops on
  the Kato-Temple error bound of the top two Ritz values (:func:`_ritz_errors`);
* rank-deficient Grams (σ2 < ``RANK_DEFICIENT_RTOL``·σ1), where a Gram resolves σ2 only to
  ≈ √eps·σ1 (spec §8), are recomputed by dense SVD (``svd``), or ARPACK when too large.

Degree classes: :mod:`sift_graph.spectral_blocks` (many row blocks at once).

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
from collections.abc import Callable

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import svds

from .bipartite import structure
from .lapack import top2_eigenvalues
from .threads import blas_threads

__all__ = ["top2_singular_values", "record_routes", "GRAM_MAX_SIDE", "RANK_DEFICIENT_RTOL"]

#: Largest smaller side (nodes) solved through a dense Gram; above it, ARPACK on B.
#: A 4096² float64 Gram is 134 MB and its eigensolve ≈ 2-3 s; svds wins beyond (ecosystem.md §4.2).
GRAM_MAX_SIDE = 4096
#: The same limit for a Gram on an accelerator (a 16384² float64 Gram is 2 GB of device memory).
DEVICE_GRAM_MAX_SIDE = 16384
#: σ2/σ1 below which the Gram is not trusted and SVD is used (metrics.md §8: passes all 448
#: test-vector matrices at 1e-9·σ1).
RANK_DEFICIENT_RTOL = 1e-6

#: Cost model: seconds ≈ operations / rate. Rates of one core, measured on the 2-core AVX-512
#: development machine: float32 and float64 Grams (``DᵀD``, BLAS ``syrk``) 1.2e11 and 4.3e10 n·m²
#: per second, LAPACK's tridiagonal reduction 1.5e10 flop/s, a dense float64 mat-vec 4e9, a scipy CSR
#: mat-vec 1.3e9 and scipy's sparse × sparse product 4e8 multiply-adds/s. Only ratios matter. On
#: AVX2-only or ARM cores the GEMM rates are ≈ 2× lower while the memory-bound ones stay, which moves
#: each break-even point by ≤ 2×, where the two routes cost the same within 2×: no route is ever far
#: from the faster one.
_RATES = {"gemm32": 1.2e11, "gemm64": 4.3e10, "eig": 1.5e10, "gemv": 4e9, "spmv": 1.3e9, "spgemm": 4e8}
#: Lanczos steps (mat-vec pairs) for σ1, σ2 (45-75 measured on random layers with the Kato-Temple
#: stop; implicitly restarted ARPACK needs 150-190), and the fixed cost of one step (Python,
#: convergence checks), in seconds.
_LANCZOS_MATVECS = 60
_LANCZOS_STEP_SECONDS = 5e-5
#: Lanczos stops when the error bound of both top Ritz values is ≤ this·σ1·max(σ_i, RTOL·σ1) (the
#: eigenvalue σ_i² is then within it, so σ_i within ≈ this/2·σ1: 20× inside 1e-9·σ1); the bound is
#: checked from step ``_LANCZOS_FIRST_CHECK`` on; after ``_LANCZOS_MAX_STEPS`` without convergence
#: ARPACK takes over.
_LANCZOS_RTOL = 1e-10
_LANCZOS_MAX_STEPS = 400
_LANCZOS_FIRST_CHECK = 9
#: Seconds of one convergence check (a tridiagonal eigensolve); checks come every
#: √(2·steps·check/step) steps, which balances their cost against the steps run past convergence.
_LANCZOS_CHECK_SECONDS = 1e-4
#: Whole-layer dense Gram products (MACs) large enough to use every core the caller allows
#: (class blocks stay single-threaded: measured 3× slower with 2 threads on a loaded 2-core box).
_THREADED_MACS = 1e10
#: Entries per dense chunk when forming a Gram or a block stack (bounds memory to ~128 MB).
_CHUNK_ENTRIES = 2**24
_MAX_DENSE_SVD_ENTRIES = 20_000_000

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
    if b.shape[1] > GRAM_MAX_SIDE:
        return "lanczos"
    row_nnz = np.diff(b.indptr).astype(np.int64)  # ≤ m ≤ GRAM_MAX_SIDE each: Σ (row nnz)² is exact in int64
    return _cheapest_route(*b.shape, b.nnz, int(row_nnz @ row_nnz), binary)


def _cheapest_route(n: int, m: int, nnz: int, row_nnz_squares: int, binary: bool) -> str:
    """:func:`_route` from the shape, the stored entries and Σ (row nnz)² of the compressed matrix,
    an exact int (:func:`top2_binary_dense` passes a lower bound where that already settles the route)."""
    if m > GRAM_MAX_SIDE:
        return "lanczos"
    dense = float(n) * m * m / _RATES["gemm32" if binary else "gemm64"]
    sparse = row_nnz_squares / _RATES["spgemm"]
    eig = min(_eigh_seconds(m), _gram_lanczos_seconds(m))
    lanczos = _LANCZOS_MATVECS * _sparse_step_seconds(nnz, m)
    if lanczos < min(dense, sparse) + eig:
        return "lanczos"
    if sparse < dense:
        return "gram-sparse"
    return "gram-dense32" if binary else "gram-dense64"


def _dense_chunk(b: sp.csr_matrix, start: int, stop: int, dtype) -> np.ndarray:
    """Rows ``start:stop`` of ``b`` as a dense ``dtype`` array (scipy's ``toarray`` of the row slice)."""
    lo, hi = b.indptr[start], b.indptr[stop]
    chunk = sp.csr_matrix((b.data[lo:hi].astype(dtype, copy=False), b.indices[lo:hi], b.indptr[start : stop + 1] - lo),
                          shape=(stop - start, b.shape[1]))
    return chunk.toarray()


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
            d = _dense_chunk(b, start, min(start + rows, n), dtype)
            g += d.T @ d
    return g.astype(np.float64, copy=False)


def _top2_svd(b: sp.csr_matrix) -> np.ndarray:
    n, m = b.shape
    if n * m <= _MAX_DENSE_SVD_ENTRIES:
        _note("svd")
        return np.linalg.svd(b.toarray(), compute_uv=False)[:2]
    return _top2_arpack(b)


def _ritz_errors(theta: np.ndarray, res: np.ndarray) -> np.ndarray:
    """Error bounds ``λ_i − θ_i`` of the top two Ritz values (``theta`` descending, residuals ``res``).

    θ_i ≤ λ_i (Cauchy interlacing), and λ_i lies within ``r_i`` of θ_i (Krylov-Bogoliubov). Once
    θ_i is separated from the rest of the spectrum the Kato-Temple bound ``r_i²/(θ_i − a)`` is far
    smaller: ``a`` bounds the next eigenvalue below from above, estimated as ``θ_{i+1} + r_{i+1}``
    (the bound every Lanczos code relies on: no eigenvalue hides between converging Ritz values).
    """
    err = res[:2].copy()
    for i in range(min(2, len(theta) - 1)):
        gap = theta[i] - (theta[i + 1] + res[i + 1])
        if gap > 0:
            err[i] = min(err[i], res[i] ** 2 / gap)
    return err


def _lanczos(matvec: Callable[[np.ndarray], np.ndarray], m: int, step_seconds: float) -> np.ndarray | None:
    """Top two eigenvalues ``λ1 ≥ λ2 ≥ 0`` of a symmetric positive semi-definite operator of dimension
    ``m`` (``BᵀB`` as two sparse mat-vecs, or a dense Gram) by Lanczos with full
    reorthogonalisation and a fixed start vector; ``None`` if not converged in
    ``_LANCZOS_MAX_STEPS`` steps.

    Stops when both errors (:func:`_ritz_errors`) are ≤ ``_LANCZOS_RTOL``·σ1·max(σ_i, RTOL·σ1) in
    eigenvalue units (σ_i = √λ_i then within ``_LANCZOS_RTOL``/2·σ1), or when λ2 is certainly below
    the rank-deficiency threshold (the caller then uses SVD). An unrestarted Krylov space of
    dimension j is the best of its size, so this needs about half the mat-vecs of implicitly
    restarted ARPACK (ncv = 40) on the same matrices. ``step_seconds`` (the cost model's time of one
    step) sets how often convergence is checked; it changes when the loop stops, never a value
    beyond the tolerance.
    """
    steps = min(m, _LANCZOS_MAX_STEPS)
    every = int(np.clip(round(math.sqrt(2.0 * _LANCZOS_MATVECS * _LANCZOS_CHECK_SECONDS / step_seconds)), 1, 10))
    basis = np.empty((steps + 1, m))
    v = _fixed_v0(m)
    basis[0] = v / np.linalg.norm(v)
    alpha: list[float] = []
    beta: list[float] = []
    top = 0.0
    next_check, last = _LANCZOS_FIRST_CHECK, None  # last: (step, error/tolerance) of the previous check
    for j in range(steps):
        u = matvec(basis[j])
        q = basis[: j + 1]
        h = q @ u  # h[j] = α_j = v_jᵀ A v_j
        alpha.append(float(h[j]))
        u -= q.T @ h  # classical Gram-Schmidt, twice: orthogonal to working precision
        u -= q.T @ (q @ u)
        beta_j = math.sqrt(float(u @ u))
        top = max(top, alpha[-1])
        breakdown = beta_j <= 1e-8 * top  # (nearly) invariant Krylov space: check now
        if j >= 1 and (breakdown or j + 1 == steps or j >= next_check):
            theta, vecs = sla.eigh_tridiagonal(np.array(alpha), np.array(beta), select="i",
                                               select_range=(max(j - 2, 0), j))
            theta, res = np.clip(theta[::-1], 0.0, None), beta_j * np.abs(vecs[-1, ::-1])
            err = _ritz_errors(theta, res)
            sigma = np.sqrt(theta[:2])
            ratio = err / (_LANCZOS_RTOL * sigma[0] * np.maximum(sigma, RANK_DEFICIENT_RTOL * sigma[0]))
            if theta[1] + res[1] < (RANK_DEFICIENT_RTOL * sigma[0]) ** 2:  # rank-deficient: the caller uses SVD
                ratio[1] = 0.0
            worst = float(np.max(ratio))
            if worst <= 1.0:
                return theta[:2]
            next_check = j + _steps_to_next_check(worst, last, j, every)
            last = (j, worst)
        if beta_j == 0.0 or j + 1 == steps:
            break
        beta.append(beta_j)
        basis[j + 1] = u / beta_j
    if m <= steps and len(alpha) == m:  # the whole space: the Ritz values are the eigenvalues
        theta = sla.eigh_tridiagonal(np.array(alpha), np.array(beta), eigvals_only=True)
        return np.clip(theta[::-1][:2], 0.0, None)
    return None


def _steps_to_next_check(worst: float, last: tuple[int, float] | None, j: int, every: int) -> int:
    """Steps until the next convergence check: ``every`` (the cost model's spacing), or fewer where
    the error bound, shrinking geometrically since the last check, should reach the tolerance sooner
    (its ratio to the tolerance is ``worst`` now; the estimate only moves a check, never the stop)."""
    if last is None or not 0.0 < worst < last[1]:
        return every
    rate = math.log(last[1] / worst) / (j - last[0])  # per step
    return int(np.clip(math.ceil(math.log(worst) / rate), 1, every))


def _top2_lanczos(b: sp.csr_matrix) -> np.ndarray | None:
    """σ1, σ2 of ``b`` (n × m, m ≤ n) by :func:`_lanczos` on BᵀB (``None``: not converged)."""
    bt = b.T  # CSC view: no transposed copy
    ev = _lanczos(lambda x: bt @ (b @ x), b.shape[1], _sparse_step_seconds(b.nnz, b.shape[1]))
    return None if ev is None else np.sqrt(ev)


def _sparse_step_seconds(nnz: int, m: int) -> float:
    """Cost model of one :func:`_lanczos` step on BᵀB (``nnz`` entries, m columns): two sparse
    mat-vecs, reorthogonalisation."""
    reorthogonalisation = 2.0 * _LANCZOS_MATVECS * m / _RATES["gemv"]
    return 2.0 * nnz / _RATES["spmv"] + reorthogonalisation + _LANCZOS_STEP_SECONDS


def _gram_step_seconds(m: int) -> float:
    """Cost model of one :func:`_lanczos` step on a dense m × m Gram."""
    return (float(m) * m + 2.0 * _LANCZOS_MATVECS * m) / _RATES["gemv"] + _LANCZOS_STEP_SECONDS


def _gram_lanczos_seconds(m: int) -> float:
    """Cost model of :func:`_lanczos` on a dense m × m Gram."""
    return _LANCZOS_MATVECS * _gram_step_seconds(m)


def _eigh_seconds(m: int) -> float:
    """Cost model of LAPACK's tridiagonal reduction of an m × m matrix (≈ 4/3·m³ flops)."""
    return 4.0 / 3.0 * float(m) ** 3 / _RATES["eig"]


def _top2_psd(g: np.ndarray) -> np.ndarray:
    """σ1, σ2 (square roots of the top two eigenvalues) of a dense positive semi-definite Gram:
    LAPACK ``dsyevr`` for small sides, :func:`_lanczos` with ``g @ x`` where that is cheaper."""
    m = g.shape[0]
    if _gram_lanczos_seconds(m) < _eigh_seconds(m):
        ev = _lanczos(lambda x: g @ x, m, _gram_step_seconds(m))
        if ev is not None:
            return np.sqrt(ev)
    return np.sqrt(np.clip(top2_eigenvalues(g), 0.0, None))


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
        d = torch.from_numpy(_dense_chunk(b, start, min(start + rows, n), np.float64)).to(device)
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
            s = _top2_psd(_gram(b, route))
    if s[1] < RANK_DEFICIENT_RTOL * s[0]:
        s = _top2_svd(b)
    return s


def _reaches_all(step: Callable[[np.ndarray], np.ndarray], n: int, rounds: int = 8) -> bool:
    """Whether all ``n`` nodes are reached from node 0 within ``rounds`` applications of ``step``
    (bool array of reached nodes → the same with their neighbours added). False: not shown."""
    reached = np.zeros(n, dtype=bool)
    reached[0] = True
    count = 1
    for _ in range(rounds):
        reached = step(reached)
        grown = int(np.count_nonzero(reached))
        if grown == n:
            return True
        if grown == count:
            return False
        count = grown
    return False


def _reaches_all_rows(b: sp.csr_matrix) -> bool:
    """Whether every row of ``b`` (no empty rows or columns) is reachable from row 0 in a few
    row → column → row steps (two sparse mat-vecs on the 0/1 structure each): then the bipartite
    graph is connected, as every column touches a row."""
    ones = structure(b)
    return _reaches_all(lambda rows: (ones @ ((ones.T @ rows.astype(np.float64)) > 0)) > 0, b.shape[0])


def top2_binary_dense(p: np.ndarray) -> np.ndarray | None:
    """``(σ1, σ2)`` of a 0/1 matrix given densely (bool, 2-D), where :func:`top2_singular_values` of
    its biadjacency ``pᵀ`` would take the ``gram-dense32`` route on one connected component: the same
    integer Gram (the smaller side's, isolated nodes dropped, in index order) and the same eigensolver,
    so the same bits. ``None`` where that route does not apply (several components, another route,
    a rank-deficient Gram): the caller then uses :func:`top2_singular_values`. It needs no sparse
    matrix, so ``hoang2023a`` starts the mask's whole-layer solve while the biadjacencies are built.
    """
    if p.dtype != np.bool_ or p.ndim != 2 or max(p.shape) >= 2**24:
        return None
    rows = np.flatnonzero(p.any(axis=1))
    cols = np.flatnonzero(p.any(axis=0))
    if len(rows) < 2 or len(cols) < 2:
        return None
    over_rows = len(cols) >= len(rows)  # the biadjacency's columns (p's rows) are its smaller side
    n, m = (len(cols), len(rows)) if over_rows else (len(rows), len(cols))
    nnz = int(np.count_nonzero(p))
    # Σ degree² ≥ nnz²/n (Cauchy-Schwarz), so the sparse Gram costs at least as much as with that
    # bound: where the bound already gives Lanczos or the dense Gram, so do the exact degrees, and
    # their pass over the mask is not needed
    route = _cheapest_route(n, m, nnz, nnz * nnz // n, True)  # Python ints: the bound is exact
    if route == "gram-sparse":  # then m ≤ GRAM_MAX_SIDE, so every degree of the larger side is too
        larger_degrees = p.sum(axis=0 if over_rows else 1, dtype=np.int64)
        route = _cheapest_route(n, m, nnz, int(larger_degrees @ larger_degrees), True)
    if route != "gram-dense32":
        return None
    g = np.zeros((m, m), dtype=np.float32)  # integer counts < 2²⁴: exact in any summation order
    per_chunk = max(1, _CHUNK_ENTRIES // m)
    kept = slice(None) if m == (p.shape[0] if over_rows else p.shape[1]) else (rows if over_rows else cols)
    for start in range(0, p.shape[1] if over_rows else p.shape[0], per_chunk):
        if over_rows:
            d = p[kept, start : start + per_chunk].astype(np.float32)  # no copy before astype if all kept
            g += d @ d.T
        else:
            d = p[start : start + per_chunk][:, kept].astype(np.float32)
            g += d.T @ d
    # connected iff every node of the smaller side is reached through shared neighbours
    if not _reaches_all(lambda nodes: g @ nodes.astype(np.float32) > 0, m):
        return None
    s = _top2_psd(g.astype(np.float64))
    if s[1] < RANK_DEFICIENT_RTOL * s[0]:
        return None
    _note("gram-dense32")
    return s


def _components(b: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """Connected components of the bipartite graph of ``b`` (no empty rows or columns; labels: rows,
    then columns). A connected graph, the usual case, is recognised by :func:`_reaches_all_rows`
    (~4 sparse mat-vecs) before scipy's ``connected_components`` is asked."""
    n, m = b.shape
    if _reaches_all_rows(b):
        return 1, np.zeros(n + m, dtype=np.int32)
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
    return _top2_singular_values(b, device, connected=False)[0]


def _top2_singular_values(b, device: str, *, connected: bool) -> tuple[tuple[float, float], bool]:
    """``((σ1, σ2), whether the bipartite graph of b's nonzeros is connected apart from isolated
    nodes)``; ``connected``: the caller has shown it is (the same structure was searched before), so
    the component search is skipped."""
    b = sp.csr_matrix(b, dtype=np.float64)
    if np.any(b.data == 0.0):
        b = b.copy()
        b.eliminate_zeros()
    if b.nnz == 0:
        return (0.0, 0.0), False
    b = _compress(b)
    e = 0
    if not _is_binary(b):  # solve on B/2ᵉ, max entry in [0.5, 1): exact, no overflow/underflow
        e = _scale_exponent(float(np.max(np.abs(b.data))))
    if e:
        b = sp.csr_matrix((np.ldexp(b.data, -e), b.indices, b.indptr), shape=b.shape)  # b may be the caller's
    n_comp, labels = (1, None) if connected else _components(b)
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
    return (float(s[0]), float(s[1])), n_comp == 1
