"""Top-two singular values of many row blocks of one or more matrices at once: the degree classes.

Spec: ``../shared/specs/metrics.md`` §3.2, §3.4, §9.2. Every row block's Gram of its smaller
side is grouped by stack size (:func:`_padded_side`, a function of the block's side alone), shared by
the blocks of every set (the mask's and |W⊙M|'s classes). Sides up to 64 go into a zero-padded stack
solved by one batched numpy ``eigvalsh`` call; zero padding appends exact zero eigenvalues to a
positive semi-definite Gram, so its top two (clipped at 0, as every route does) are unchanged.
Larger blocks (one or two per size) are solved unpadded, one LAPACK ``dsyevr`` call each
(:mod:`sift_graph.lapack`: the top two only, GIL released). Stacks are independent jobs: with an
executor they run in parallel (``hoang2023a.metrics`` runs them on the caller's thread while its
worker solves the two whole layers, then on both threads).

Every block is solved in float64 with the exactness rules of :mod:`sift_graph.spectral` (float32
Grams only for 0/1 blocks, power-of-two scaling, SVD below ``RANK_DEFICIENT_RTOL``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .bipartite import dense_rows, row_block_entries, touched_columns
from .lapack import top2_eigenvalues
from .spectral import (_CHUNK_ENTRIES, _SAFE_EXPONENT, RANK_DEFICIENT_RTOL, _note, _unscale, _use_torch,
                       top2_singular_values)
from .threads import InlineExecutor

__all__ = ["BlockSet", "top2_block_sets", "top2_blocks"]

#: Class blocks whose smaller side exceeds this go through :func:`.spectral.top2_singular_values`.
_BLOCK_MAX_SIDE = 2048
#: Class blocks with a smaller side up to this are padded to a multiple of 8 (:func:`_padded_side`).
_PAD_MAX_SIDE = 64


@dataclass(frozen=True)
class BlockSet:
    """Row blocks ``b[rows]`` (one per entry of ``groups``) for :func:`top2_block_sets`.

    ``binary=True`` (0/1 blocks) forms the Grams in float32, exact for integer counts < 2²⁴;
    ``touched``: the blocks' :func:`~sift_graph.bipartite.touched_columns`, if known; ``entries``:
    :func:`~sift_graph.bipartite.row_block_entries` of ``b`` and ``groups``, if known (a set of a
    matrix of ``b``'s structure with the same groups has the same ones).
    """

    b: sp.csr_matrix
    groups: Sequence[np.ndarray]
    binary: bool = False
    touched: Sequence[int] | np.ndarray | None = None
    entries: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _padded_side(side: int) -> int:
    """The stack size a block of smaller side ``side`` is solved in: a function of the side alone, so
    a block's values never depend on which other blocks share its call. Up to 64: the next multiple
    of 8 (few calls for many small blocks); above: the side itself (no padding flops)."""
    return side if side > _PAD_MAX_SIDE else -(-side // 8) * 8


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
    if not len(rows):
        return 0
    e = int(row_exps[rows].max())
    return e if abs(e) > _SAFE_EXPONENT else 0


@dataclass(frozen=True)
class _Block:
    """One block to solve in a stack: ``b[rows]`` scaled by 2⁻ᵉ, Gram over columns if ``tall``.

    ``flat``/``values``: the block's entries as positions in its dense ``k × n_cols`` array and their
    values (computed for all blocks of a set at once, :func:`~sift_graph.bipartite.row_block_entries`),
    so that filling the dense block is one numpy scatter, which runs without the GIL.
    """

    key: tuple[int, int]  # (set, group)
    shape: tuple[int, int]
    flat: np.ndarray
    values: np.ndarray
    tall: bool
    e: int
    binary: bool

    def dense(self) -> np.ndarray:
        """The block as a dense array (touched columns only if tall), scaled; float32 if 0/1."""
        d = np.zeros(self.shape[0] * self.shape[1], dtype=np.float32 if self.binary else np.float64)
        d[self.flat] = np.ldexp(self.values, -self.e) if self.e else self.values
        d = d.reshape(self.shape)
        return d[:, d.any(axis=0)] if self.tall else d


def _gram(blk: _Block) -> np.ndarray:
    """The Gram of a block's smaller side (BLAS ``syrk``; exact in float32 for 0/1 blocks)."""
    d = blk.dense()
    return d.T @ d if blk.tall else d @ d.T


def _solve_stack(blocks: list[_Block], side: int, device: str) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Top two singular values of each block: its Gram zero-padded to ``side`` in one stack and one
    batched ``eigvalsh`` (torch on a device; numpy on the CPU up to side 64), or, on the CPU above
    64, unpadded Grams by one ``dsyevr`` each; SVD for rank-deficient blocks."""
    if _use_torch(device):
        import torch

        stack = torch.zeros((len(blocks), side, side), dtype=torch.float64, device=device)
        for j, blk in enumerate(blocks):
            d = torch.from_numpy(blk.dense()).to(device=device, dtype=torch.float64)
            g = d.T @ d if blk.tall else d @ d.T
            stack[j, : len(g), : len(g)] = g
        ev = torch.linalg.eigvalsh(stack)[:, -2:].cpu().numpy()[:, ::-1]
    elif side > _PAD_MAX_SIDE:  # unpadded blocks, one LAPACK dsyevr each (top two only, GIL released)
        ev = np.array([top2_eigenvalues(_gram(blk)) for blk in blocks])  # float32 Grams become float64 there
    else:
        stack = np.zeros((len(blocks), side, side))
        for j, blk in enumerate(blocks):
            g = _gram(blk)
            stack[j, : len(g), : len(g)] = g
        ev = np.linalg.eigvalsh(stack)[:, :-3:-1]  # numpy releases the GIL here, except for small stacks
    s = np.sqrt(np.clip(ev, 0.0, None))
    for j in np.flatnonzero(s[:, 1] < RANK_DEFICIENT_RTOL * s[:, 0]):
        _note("svd")
        s[j] = np.concatenate([np.linalg.svd(blocks[j].dense().astype(np.float64), compute_uv=False), [0.0]])[:2]
    s = _unscale(s, np.array([[blk.e] for blk in blocks]))
    return [(blk.key, sj) for blk, sj in zip(blocks, s)]


def top2_block_sets(sets: Sequence[BlockSet], *, device: str = "cpu", executor=None) -> list[np.ndarray]:
    """``(σ1, σ2)`` of every row block of every set: one array of shape ``(len(set.groups), 2)`` per set.

    Blocks are solved through the Gram of their smaller side (columns without an entry dropped).
    Blocks of every set that share a stack size (:func:`_padded_side`) share one job: up to side 64
    one zero-padded stack and one batched ``eigvalsh`` call (zero padding appends exact zero
    eigenvalues to a positive semi-definite Gram, so its top two are unchanged), above it one
    ``dsyevr`` call per block (:func:`_solve_stack`). One-row/one-column blocks use the closed form,
    blocks with a side above ``_BLOCK_MAX_SIDE`` :func:`top2_singular_values`. Non-0/1 blocks are
    scaled by a power of two first; blocks with σ2 < ``RANK_DEFICIENT_RTOL``·σ1 are recomputed by
    SVD. ``executor`` (``concurrent.futures``-like): stacks are submitted to it, largest first, so
    that they run in parallel (Gram products and all but small stacks release the GIL); default: in
    turn.
    A block's values depend only on the block, never on the other blocks or the executor.
    """
    executor = executor or InlineExecutor()
    outs = [np.zeros((len(bs.groups), 2)) for bs in sets]
    by_side: dict[int, list[_Block]] = {}
    for si, bs in enumerate(sets):
        if not len(bs.groups):
            continue
        b = bs.b
        binary = bs.binary and max(b.shape) < 2**24
        lens = np.array([len(g) for g in bs.groups], dtype=np.int64)
        touched = touched_columns(b, bs.groups) if bs.touched is None else np.asarray(bs.touched)
        sides = np.minimum(lens, touched)
        row_exps = _row_exponents(b, binary)
        scaled = bool(np.any(np.abs(row_exps) > _SAFE_EXPONENT))  # else no block is scaled
        flat, offsets, bounds = bs.entries if bs.entries is not None else row_block_entries(b, bs.groups)
        values = b.data[offsets]
        for i, g in enumerate(bs.groups):
            e = _block_exponent(row_exps, g) if scaled else 0
            if sides[i] == 1:  # one row or one column: σ1 = Frobenius norm
                _note("closed-form")
                outs[si][i] = _unscale(np.array([np.linalg.norm(np.ldexp(dense_rows(b, g), -e)), 0.0]), e)
            elif sides[i] > _BLOCK_MAX_SIDE:
                outs[si][i] = top2_singular_values(b[g], device=device)
            elif sides[i] > 1:
                lo, hi = bounds[i], bounds[i + 1]
                blk = _Block((si, i), (int(lens[i]), b.shape[1]), flat[lo:hi], values[lo:hi],
                             bool(lens[i] > touched[i]), e, binary)
                by_side.setdefault(_padded_side(int(sides[i])), []).append(blk)
    if by_side:
        _note("blocks")
    jobs = []
    for side in sorted(by_side, reverse=True):  # largest first: the pool ends evenly loaded
        per_call = max(1, _CHUNK_ENTRIES // (side * side))
        blocks = by_side[side]
        for start in range(0, len(blocks), per_call):
            jobs.append(executor.submit(_solve_stack, blocks[start : start + per_call], side, device))
    for job in jobs:
        for (si, i), sv in job.result():
            outs[si][i] = sv
    return outs


def top2_blocks(b: sp.csr_matrix, groups: Sequence[np.ndarray], *, binary: bool = False,
                device: str = "cpu", touched: np.ndarray | None = None) -> np.ndarray:
    """``(σ1, σ2)`` of each row block ``b[rows]`` (the degree classes), shape ``(len(groups), 2)``;
    :func:`top2_block_sets` for one set. No component split (a class's values are compared at
    1e-9·σ1)."""
    return top2_block_sets([BlockSet(b, groups, binary, touched)], device=device)[0]
