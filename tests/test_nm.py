"""N:M and transposable N:M masks (spec methods.md §4.6) against brute force and the spec's cases."""
import itertools

import numpy as np
import pytest
import torch

from sift_train.methods import nm_mask
from sift_train.methods.nm import parse_pattern, pattern_count, pattern_select

W = torch.tensor([[0.1, -0.9, 0.3, 0.05, 0.7, -0.2, 0.6, 0.4],
                  [-0.8, 0.15, 0.25, 0.5, -0.05, 0.35, -0.45, 0.9]])


@pytest.mark.parametrize("n,m,expected", [
    (2, 4, [[0, 1, 1, 0, 1, 0, 1, 0], [1, 0, 0, 1, 0, 0, 1, 1]]),
    (4, 8, [[0, 1, 0, 0, 1, 0, 1, 1], [1, 0, 0, 1, 0, 0, 1, 1]]),
    (2, 8, [[0, 1, 0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 1]]),
    (1, 8, [[0, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1]]),
])
def test_nm_spec_case(n, m, expected):
    assert nm_mask(W, n, m).int().tolist() == expected


def brute_nm(w, n, m):
    """Each group: the n-subset of largest Σ|w| by enumeration."""
    out = np.zeros(w.shape, dtype=bool)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], m):
            best = max(itertools.combinations(range(m), n), key=lambda s: sum(abs(w[r, g + j]) for j in s))
            out[r, [g + j for j in best]] = True
    return out


def brute_nm_t(tile, n):
    """Max Σ|w| over all 0/1 m x m matrices with n per row and column (enumeration by rows)."""
    m = tile.shape[0]
    rows = list(itertools.combinations(range(m), n))
    best, arg = -1.0, None
    for choice in itertools.product(rows, repeat=m):
        cols = np.zeros(m, dtype=int)
        for s in choice:
            cols[list(s)] += 1
        if (cols == n).all():
            val = sum(abs(tile[r, j]) for r, s in enumerate(choice) for j in s)
            if val > best:
                best, arg = val, choice
    mask = np.zeros((m, m), dtype=bool)
    for r, s in enumerate(arg):
        mask[r, list(s)] = True
    return mask, best


def test_nm_random_matrices_against_brute_force():
    g = torch.Generator().manual_seed(0)
    for n, m in [(1, 4), (2, 4), (3, 4), (2, 6)]:
        w = torch.randn(5, 2 * m, generator=g)
        assert (nm_mask(w, n, m).numpy() == brute_nm(w.numpy(), n, m)).all()


def test_transposable_spec_case_exact_and_greedy():
    a = torch.tensor([[.9, .8, .1, .7], [.85, .2, .3, .15], [.6, .05, .25, .5], [.4, .35, .45, .55]])
    exact = nm_mask(a, 2, 4, transposable=True)
    assert exact.int().tolist() == [[0, 1, 0, 1], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]]
    assert float((a * exact).sum()) == pytest.approx(4.55)
    greedy = pattern_select(a, 2, 4, transposable=True, solver="greedy")
    assert greedy.int().tolist() == [[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_transposable_exact_matches_brute_force_on_random_tiles(n):
    g = torch.Generator().manual_seed(n)
    for _ in range(3):
        w = torch.randn(4, 8, generator=g, dtype=torch.float64)  # two 4x4 tiles
        mask = nm_mask(w, n, 4, transposable=True).numpy()
        for c in (0, 4):
            _, best = brute_nm_t(w[:, c:c + 4].numpy(), n)
            tile = mask[:, c:c + 4]
            assert (tile.sum(0) == n).all() and (tile.sum(1) == n).all()
            assert float(np.abs(w[:, c:c + 4].numpy())[tile].sum()) == pytest.approx(best, rel=1e-9)
        greedy = pattern_select(w.abs(), n, 4, transposable=True, solver="greedy").numpy()
        assert np.abs(w.numpy())[greedy].sum() >= 0.5 * np.abs(w.numpy())[mask].sum()


def test_conv_groups_run_along_input_channels():
    mag = torch.rand(8, generator=torch.Generator().manual_seed(1)) + 0.1
    w = mag.view(1, 8, 1, 1).expand(8, 8, 3, 3).clone()
    mask = nm_mask(w, 2, 4)
    ref = mask[0, :, 0, 0]
    assert int(ref.sum()) == 4
    assert all(mask[o, :, i, j].equal(ref) for o in range(8) for i in range(3) for j in range(3))
    t = nm_mask(torch.randn(8, 8, 3, 3), 2, 4, transposable=True)
    for i in range(3):
        for j in range(3):
            tap = t[:, :, i, j]
            assert (tap.reshape(8, 2, 4).sum(-1) == 2).all() and (tap.T.reshape(8, 2, 4).sum(-1) == 2).all()


def test_densities_and_padding_rule():
    for n, d in [(4, 0.5), (2, 0.25), (1, 0.125)]:
        assert pattern_count((16, 32), n, 8, True) == d * 16 * 32
    # 10 inputs, 2:4: groups of 4, 4 and a partial group of 2 -> keeps min(2, 2) = 2 each -> 6 per row
    mask = nm_mask(torch.randn(3, 10), 2, 4)
    assert mask.sum(1).tolist() == [6, 6, 6]
    assert pattern_count((3, 9), 2, 4) == 3 * 5  # partial group of 1 keeps 1


def test_parse_pattern():
    assert parse_pattern("4:8-T") == (4, 8, True) and parse_pattern("2:4") == (2, 4, False)
    with pytest.raises(ValueError, match="0 < N < M"):
        parse_pattern("4:4")


def _is_pattern(mask, n, m, transposable):
    """N per group of m inputs at every (out, tap); with -T also N per group of m outputs."""
    w = mask.permute(2, 3, 0, 1).reshape(-1, mask.shape[0], mask.shape[1]) if mask.dim() == 4 else mask[None]
    rows = w.reshape(w.shape[0], w.shape[1], -1, m).sum(-1)
    ok = bool((rows == n).all())
    if transposable:
        cols = w.transpose(1, 2).reshape(w.shape[0], w.shape[2], -1, m).sum(-1)
        ok = ok and bool((cols == n).all())
    return ok


@pytest.mark.slow
@pytest.mark.parametrize("pattern,method", [("2:4", "rigl"), ("2:8-T", "set")])
def test_drop_and_grow_keep_the_pattern_after_every_update(pattern, method):
    from sift_train.config import make_config
    from sift_train.data import prepare
    from sift_train.train import build

    n, m, t = parse_pattern(pattern)
    cfg = make_config("digits", dataset="synthetic", model="cnn", family="dense", sparsity=0.5, method=method,
                      epochs=1, batch_size=32, update_interval=2, sparsity_pattern=pattern)
    setup = build(cfg)
    sparse = setup.sparse
    changed = 0
    for x, y, gen in setup.batches.epoch(0):
        before = {k: v.clone() for k, v in sparse.masking.masks.items()}
        setup.optimizer.zero_grad()
        torch.nn.functional.cross_entropy(setup.model(prepare(x, setup.data, True, gen)), y).backward()
        setup.optimizer.step()
        for name, mask in sparse.masking.masks.items():
            assert _is_pattern(mask, n, m, t), name
            assert int(mask.sum()) == mask.numel() * n // m
            assert bool((sparse.masking.params[name].detach()[~mask] == 0).all())
            changed += int((mask != before[name]).sum())
    assert changed > 0
