"""N:M and transposable N:M masks (spec methods.md §4; Sparse-IFT Table 10 uses 4:8-T, 2:8-T, 1:8-T).

Direction (§4.1): groups of ``M`` consecutive weights along the **input** dimension -- Linear
``W[o, gM:(g+1)M]``, Conv2d ``M`` consecutive input channels at a fixed ``(c_out, kh, kw)``. Transposable
(``N:M-T``): in every ``M x M`` tile of the GEMM view (``M`` output x ``M`` input channels, per kernel tap
for convolutions) every row and every column keeps ``N`` entries.

**Widths not divisible by M** (sift rule): the input (and, for ``-T``, the output) dimension is padded
to a multiple of ``M`` with entries that are never kept; real entries score ``|w| + 1`` and padding 0,
so a partial group of ``r < M`` inputs keeps ``min(N, r)`` entries and a partial tile is solved as an
``M x M`` tile whose padded rows/columns take the capacity the real ones cannot use.
"""
from __future__ import annotations

import re

import numpy as np
import torch

PATTERN_RE = re.compile(r"^(\d+):(\d+)(-T)?$")


def parse_pattern(text: str) -> tuple[int, int, bool]:
    """``"2:4"`` -> ``(2, 4, False)``, ``"4:8-T"`` -> ``(4, 8, True)``; ``ValueError`` unless ``0 < N < M``."""
    match = PATTERN_RE.match(text.strip())
    if not match:
        raise ValueError(f"sparsity pattern {text!r}: expected N:M or N:M-T, e.g. 2:4 or 4:8-T")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ValueError(f"sparsity pattern {text!r}: need 0 < N < M")
    return n, m, match.group(3) is not None


def _taps(weight: torch.Tensor) -> np.ndarray:
    """``(taps, out, in)`` view: Linear ``(1, out, in)``, Conv2d ``(kh*kw, C_out, C_in)``."""
    w = weight.detach().cpu().double().numpy()
    if w.ndim == 2:
        return w[None]
    if w.ndim == 4:
        return w.transpose(2, 3, 0, 1).reshape(-1, w.shape[0], w.shape[1])
    raise ValueError(f"N:M masks need a 2-D or 4-D weight in PyTorch layout, got shape {tuple(weight.shape)}")


def _untaps(mask: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 2:
        return torch.from_numpy(mask[0].copy())
    o, i, kh, kw = shape
    return torch.from_numpy(np.ascontiguousarray(mask.reshape(kh, kw, o, i).transpose(2, 3, 0, 1)))


def _pad(score: np.ndarray, m: int, both: bool) -> np.ndarray:
    """Real entries ``score + 1`` (>= 1), padding 0, to multiples of ``m`` (inputs; outputs if ``both``)."""
    t, o, i = score.shape
    po = -(-o // m) * m if both else o
    out = np.zeros((t, po, -(-i // m) * m))
    out[:, :o, :i] = score + 1.0
    return out


def _rows_topn(score: np.ndarray, n: int, m: int) -> np.ndarray:
    """Top-``n`` per group of ``m`` along the last axis (stable: lower index wins ties)."""
    t, o, i = score.shape
    g = score.reshape(t, o, i // m, m)
    order = np.argsort(-g, axis=-1, kind="stable")[..., :n]
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return keep.reshape(t, o, i)


def _tiles(score: np.ndarray, m: int) -> np.ndarray:
    t, o, i = score.shape
    return score.reshape(t, o // m, m, i // m, m).transpose(0, 1, 3, 2, 4).reshape(-1, m, m)


def _untile(tiles: np.ndarray, shape: tuple[int, int, int], m: int) -> np.ndarray:
    t, o, i = shape
    return tiles.reshape(t, o // m, i // m, m, m).transpose(0, 1, 3, 2, 4).reshape(t, o, i)


def transposable_exact(tiles: np.ndarray, n: int) -> np.ndarray:
    """Max-weight ``n``-per-row-and-column masks of ``(K, M, M)`` tiles: one LP over all tiles,
    solved as a MILP by SciPy/HiGHS (the bipartite b-matching polytope is integral, §4.2)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    k, m, _ = tiles.shape
    nvar = k * m * m
    idx = np.arange(nvar).reshape(k, m, m)
    rows = np.concatenate([np.repeat(np.arange(k * m), m), k * m + np.repeat(np.arange(k * m), m)])
    cols = np.concatenate([idx.reshape(-1), idx.transpose(0, 2, 1).reshape(-1)])
    a = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(2 * k * m, nvar)).tocsr()
    res = milp(-tiles.reshape(-1), constraints=LinearConstraint(a, n, n), integrality=np.ones(nvar),
               bounds=Bounds(0, 1))
    if res.x is None:
        raise RuntimeError(f"transposable N:M: the solver failed ({res.message})")
    return (res.x > 0.5).reshape(k, m, m)


def transposable_greedy(tiles: np.ndarray, n: int) -> np.ndarray:
    """Hubara's fast approximation (``ASP mn_2d_greedy``, §4.2): visit entries by descending score
    and accept while the row and the column hold fewer than ``n``; may leave some with fewer."""
    k, m, _ = tiles.shape
    keep = np.zeros(tiles.shape, dtype=bool)
    for b in range(k):
        row, col = np.zeros(m, dtype=int), np.zeros(m, dtype=int)
        for flat in np.argsort(-tiles[b].reshape(-1), kind="stable"):
            r, c = divmod(int(flat), m)
            if row[r] < n and col[c] < n:
                keep[b, r, c] = True
                row[r] += 1
                col[c] += 1
    return keep


def pattern_select(score: torch.Tensor, n: int, m: int, *, transposable: bool = False,
                   solver: str = "exact") -> torch.Tensor:
    """Bool mask of ``score``'s shape keeping the largest scores under the N:M(-T) pattern."""
    if not 0 < n < m:
        raise ValueError(f"N:M pattern needs 0 < N < M, got {n}:{m}")
    taps = _taps(score)
    t, o, i = taps.shape
    padded = _pad(taps, m, transposable)
    if not transposable:
        keep = _rows_topn(padded, n, m)
    else:
        if solver not in ("exact", "greedy"):
            raise ValueError(f"unknown transposable N:M solver {solver!r}; expected 'exact' or 'greedy'")
        tiles = _tiles(padded, m)
        solve = transposable_exact if solver == "exact" else transposable_greedy
        keep = _untile(solve(tiles, n), padded.shape, m)
    return _untaps(keep[:, :o, :i], tuple(score.shape)).to(score.device)


def nm_mask(weight: torch.Tensor, n: int, m: int, *, transposable: bool = False) -> torch.Tensor:
    """Bool N:M mask of ``weight`` (PyTorch layout): in every group of ``m`` consecutive inputs the
    ``n`` largest ``|w|`` (ties: lower index), or with ``transposable=True`` the exact maximum-``Σ|w|``
    mask with ``n`` per row and per column of every ``m x m`` tile (spec methods.md §4.1-4.2).

    References: Mishra et al. 2021 (NVIDIA ASP) for N:M; Hubara et al., "Accelerated Sparse Neural
    Training: A Provable and Efficient Method to Find N:M Transposable Masks", NeurIPS 2021.
    """
    return pattern_select(weight.detach().abs(), n, m, transposable=transposable)


def pattern_count(shape: tuple[int, ...], n: int, m: int, transposable: bool = False) -> int:
    """Active entries of a full N:M(-T) mask of ``shape`` under sift's padding rule."""
    return int(pattern_select(torch.ones(shape), n, m, transposable=transposable).sum())


class PatternMethod:
    """RigL/SET/static under an N:M(-T) pattern (spec §4.5 (c)): drop by ``|w|`` as the wrapped method
    does, then re-select the pattern with the surviving entries first (a bonus larger than any sum of
    grow scores in a tile) and the wrapped method's grow scores (rescaled to [0, 1]) after them, so every
    group (tile) holds exactly its pattern count after every update."""

    def __init__(self, inner, n: int, m: int, transposable: bool = False, solver: str = "exact"):
        from .base import DropAndGrow

        if inner.dynamic and not isinstance(inner, DropAndGrow):
            raise ValueError(f"--sparsity-pattern works with static, set and rigl, not {inner.name!r}")
        self.inner, self.n, self.m, self.transposable, self.solver = inner, n, m, transposable, solver
        self.name, self.dynamic, self.needs_dense_grad = inner.name, inner.dynamic, inner.needs_dense_grad

    def initial_mask(self, weight: torch.Tensor) -> torch.Tensor:
        """Magnitude N:M(-T) mask of the initial weights."""
        return pattern_select(weight.detach().abs(), self.n, self.m, transposable=self.transposable,
                              solver=self.solver)

    def update_masks(self, weights, grads, masks, drop_fraction, targets, generator):
        from .base import drop_by_magnitude

        out = {}
        for name, mask in masks.items():
            kept = drop_by_magnitude(weights[name], mask, drop_fraction)
            grow = self.inner.grow_scores(weights[name], grads.get(name), kept, generator).detach().double()
            grow = (grow - grow.min()) / (grow.max() - grow.min() + 1e-12)
            score = grow + kept.double() * (self.m * self.m + 2)
            out[name] = pattern_select(score, self.n, self.m, transposable=self.transposable, solver=self.solver)
        return out
