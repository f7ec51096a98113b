"""top2_singular_values against dense float64 SVD, closed forms and networkx (metrics.md §8, §9.2)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sift_graph
from sift_graph import spectral, spectral_blocks
from sift_graph.bipartite import degree_classes, dense_rows
from sift_graph.spectral import record_routes, top2_singular_values
from sift_graph.spectral_blocks import top2_blocks

from dense_svd import svd_top2


def assert_matches_svd(a, rtol=1e-9):
    ours = np.array(top2_singular_values(sp.csr_matrix(a)))
    ref = svd_top2(a)
    scale = max(ref[0], 1e-300)
    assert np.all(np.abs(ours - ref) <= rtol * np.maximum(np.abs(ref), scale)), (ours, ref)


@pytest.mark.parametrize("shape,density,weighted", [
    ((30, 50), 0.2, False), ((50, 30), 0.5, True), ((200, 40), 0.05, False),
    ((64, 64), 0.9, True), ((7, 300), 0.3, True), ((1, 40), 0.5, False), ((300, 2), 0.4, True),
])
def test_small_random_blocks_match_dense_svd(shape, density, weighted):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    a = (rng.random(shape) < density).astype(float)
    if weighted:
        a *= np.abs(rng.standard_normal(shape))
    assert_matches_svd(a)


WHOLE_LAYER_ROUTES = ["gram-dense32", "gram-dense64", "gram-sparse", "lanczos"]


def test_lanczos_falls_back_to_arpack_when_not_converged(monkeypatch):
    monkeypatch.setattr(spectral, "_LANCZOS_MAX_STEPS", 6)
    monkeypatch.setattr(spectral, "_route", lambda b, binary: "lanczos")
    rng = np.random.default_rng(6)
    a = (rng.random((400, 120)) < 0.1) * np.abs(rng.standard_normal((400, 120)))
    with record_routes() as taken:
        assert_matches_svd(a)
    assert taken == ["lanczos", "arpack"]


def test_lanczos_on_rank_deficient_and_tiny_layers_matches_dense_svd(monkeypatch):
    """Rank 1 (σ2 = 0: SVD fallback), a side of 2, and a Krylov space exhausted before convergence."""
    monkeypatch.setattr(spectral, "_route", lambda b, binary: "lanczos")
    assert_matches_svd(np.ones((30, 20)))
    assert_matches_svd(np.array([[1.0, 2.0], [3.0, 1.0], [0.5, 0.0]]))
    rng = np.random.default_rng(5)
    assert_matches_svd(np.abs(rng.standard_normal((9, 7))))


@pytest.mark.parametrize("route", WHOLE_LAYER_ROUTES)
def test_every_whole_layer_route_matches_dense_svd(monkeypatch, route):
    """Each route forced in turn (several row chunks for the dense Grams), mask and |W|."""
    monkeypatch.setattr(spectral, "_CHUNK_ENTRIES", 300 * 256)
    monkeypatch.setattr(spectral, "_route", lambda b, binary: route)
    rng = np.random.default_rng(7)
    mask = rng.random((1200, 300)) < 0.2
    for a in (mask.astype(float), mask * np.abs(rng.standard_normal(mask.shape))):
        if route == "gram-dense32" and not np.all(a[a != 0] == 1):
            continue  # the float32 Gram is exact only for 0/1 matrices; the cost model never picks it otherwise
        with record_routes() as taken:
            assert_matches_svd(a)
        assert taken == [route]


def _near_degenerate_matrices():
    """σ2 = σ3 exactly (band circulant: σ_k = σ_{n−k}), σ2 − σ3 ≈ 1e-7·σ1 (a perturbed circulant),
    and a random sparse layer: the Kato-Temple stop must hold its 1e-9·σ1 on all of them."""
    n, d = 240, 9
    circ = np.zeros((n, n))
    for i in range(n):
        circ[i, (i + np.arange(d)) % n] = 1.0
    rng = np.random.default_rng(21)
    perturbed = circ.copy()
    perturbed[0, d] = 1e-6
    rand = (rng.random((900, 240)) < 0.1) * np.abs(rng.standard_normal((900, 240)))
    return [circ, perturbed, rand]


@pytest.mark.parametrize("solver", ["lanczos-on-b", "lanczos-on-gram", "eigh-on-gram"])
def test_lanczos_and_gram_eigensolvers_match_dense_svd_on_close_sigma2_sigma3(monkeypatch, solver):
    if solver == "lanczos-on-b":
        monkeypatch.setattr(spectral, "_route", lambda b, binary: "lanczos")
    else:
        monkeypatch.setattr(spectral, "_route", lambda b, binary: "gram-dense64")
        cheap, dear = (lambda m: 0.0), (lambda m: np.inf)
        monkeypatch.setattr(spectral, "_gram_lanczos_seconds", cheap if solver == "lanczos-on-gram" else dear)
        monkeypatch.setattr(spectral, "_eigh_seconds", dear if solver == "lanczos-on-gram" else cheap)
    lanczos = []
    original = spectral._lanczos
    monkeypatch.setattr(spectral, "_lanczos", lambda *a: lanczos.append(1) or original(*a))
    for a in _near_degenerate_matrices():
        assert_matches_svd(a)
    assert bool(lanczos) == (solver != "eigh-on-gram")


def test_cost_model_routes():
    """Gram where its GEMM + eigensolve is cheaper, Lanczos for a wide side or a costly float64 Gram."""
    rng = np.random.default_rng(8)

    def route(shape, density, binary):
        b = sp.random(*shape, density=density, random_state=rng, format="csr")
        if binary:
            b.data[:] = 1.0
        return spectral._route(b, binary)

    assert route((4608, 512), 0.1, True) == "gram-dense32"
    assert route((20000, 300), 0.05, False) == "gram-sparse"  # 25 ms vs Lanczos 40 ms, dense 55 ms
    assert route((4608, 512), 0.5, False) == "gram-dense64"
    assert route((4608, 512), 0.03, False) == "lanczos"  # 12 ms vs sparse Gram 20 ms
    assert route((20000, 5000), 0.001, True) == "lanczos"  # side above GRAM_MAX_SIDE
    assert route((14571, 1619), 0.1, False) == "lanczos"  # float64 Gram of 3.8e10 MACs
    assert route((14571, 1619), 0.1, True) == "lanczos"  # 100 mat-vecs beat GEMM + eigh of 1619²


def test_arpack_route_for_wide_layers_matches_dense_svd(monkeypatch):
    monkeypatch.setattr(spectral, "GRAM_MAX_SIDE", 100)  # force Lanczos on a cheap matrix
    rng = np.random.default_rng(9)
    mask = rng.random((500, 300)) < 0.1
    with record_routes() as taken:
        assert_matches_svd(mask.astype(float))
        assert_matches_svd(mask * np.abs(rng.standard_normal(mask.shape)))
    assert taken == ["lanczos", "lanczos"]


def test_complete_bipartite_has_sigma1_sqrt_ab_and_sigma2_zero():
    for a, b in [(3, 5), (32, 48), (200, 7)]:
        s1, s2 = top2_singular_values(np.ones((a, b)))
        assert abs(s1 - np.sqrt(a * b)) <= 1e-12 * np.sqrt(a * b)
        assert s2 <= 1e-9 * s1  # SVD fallback: a Gram alone leaves ~√eps·σ1


@pytest.mark.parametrize("n,d", [(96, 8), (50, 3), (64, 5)])
def test_biregular_circulant_has_known_spectrum(n, d):
    """Band circulant with d consecutive ones per row: σ_k = |sin(πdk/n) / sin(πk/n)|, σ_0 = d."""
    a = np.zeros((n, n))
    for i in range(n):
        a[i, (i + np.arange(d)) % n] = 1.0
    k = np.arange(1, n)
    expected = np.sort(np.abs(np.sin(np.pi * d * k / n) / np.sin(np.pi * k / n)))[::-1]
    s1, s2 = top2_singular_values(a)
    assert abs(s1 - d) <= 1e-12 * d
    assert abs(s2 - expected[0]) <= 1e-9 * d


def test_two_identical_components_have_gap_exactly_zero():
    rng = np.random.default_rng(3)
    block = rng.random((20, 30)) < 0.3
    w = rng.standard_normal((20, 30))
    mask = np.zeros((40, 60), bool)
    weight = np.zeros((40, 60))
    mask[:20, :30] = mask[20:, 30:] = block
    weight[:20, :30] = weight[20:, 30:] = w
    s1, s2 = top2_singular_values(mask.astype(float))
    assert s1 == s2
    assert sift_graph.spectral_gap(mask, weight) == 0.0
    assert sift_graph.layer_metrics(mask, weight)["lambda"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_networkx_adjacency_spectrum(seed):
    """The 3rd largest |eigenvalue| of the bipartite adjacency (reference μ̂) is our σ2."""
    rng = np.random.default_rng(seed)
    mask = rng.random((12, 9)) < 0.4
    weight = rng.standard_normal((12, 9))
    g = sift_graph.to_networkx(mask, weight)
    ev = np.sort(np.abs(nx.adjacency_spectrum(g, weight="weight")))[::-1]
    ours = sift_graph.layer_metrics(mask, weight)
    assert abs(ours["lambda_sigma1"] - ev[0]) <= 1e-9 * ev[0]
    assert abs(ours["lambda_sigma2"] - ev[2]) <= 1e-9 * ev[0]
    ev_m = np.sort(np.abs(nx.adjacency_spectrum(sift_graph.to_networkx(mask), weight="weight")))[::-1]
    assert abs(ours["sigma1"] - ev_m[0]) <= 1e-9 * ev_m[0]
    assert abs(ours["sigma2"] - ev_m[2]) <= 1e-9 * ev_m[0]


def test_repeated_calls_are_bit_identical():
    rng = np.random.default_rng(11)
    mask = rng.random((64, 32, 3, 3)) < 0.1
    weight = rng.standard_normal(mask.shape).astype(np.float32)
    for convention in ("hoang2023a", "hoang2023b"):
        a = sift_graph.layer_metrics(mask, weight, convention=convention)
        b = sift_graph.layer_metrics(mask, weight, convention=convention)
        assert repr(a) == repr(b)


def test_arpack_path_is_deterministic(monkeypatch):
    monkeypatch.setattr(spectral, "GRAM_MAX_SIDE", 10)
    b = sp.random(400, 200, density=0.05, random_state=4, format="csr")
    assert top2_singular_values(b) == top2_singular_values(b)


def test_empty_matrix_has_zero_singular_values():
    assert top2_singular_values(np.zeros((5, 4))) == (0.0, 0.0)


def class_blocks(seed=12, shape=(40, 30, 3, 3), density=0.15):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < density
    b = sift_graph.biadjacency(mask)
    bw = sift_graph.biadjacency(mask * np.abs(rng.standard_normal(mask.shape)))
    groups = [idx for d, idx in degree_classes(b) if d and len(idx) >= 2]
    return b, bw, groups


def test_degree_class_blocks_match_dense_svd():
    """The batched per-class route (padded stacks, one eigvalsh per bucket), mask and |W|."""
    b, bw, groups = class_blocks()
    assert len(groups) > 10
    for m, binary in ((b, True), (bw, False)):
        with record_routes() as taken:
            ours = top2_blocks(m, groups, binary=binary)
        assert "blocks" in taken
        for g, s in zip(groups, ours):
            ref = svd_top2(dense_rows(m, g))
            assert np.all(np.abs(s - ref) <= 1e-9 * max(ref[0], 1e-300)), (s, ref)


def test_blocks_share_stacks_and_their_values_do_not_depend_on_the_company(monkeypatch):
    """Mask and |W| blocks of both sets share stacks (fewer calls than blocks); every block's values are
    bit-identical to the block solved alone, and to the sets solved apart, in a 2-thread pool too."""
    b, bw, groups = class_blocks(seed=13)
    calls = []
    solve = spectral_blocks._solve_stack
    monkeypatch.setattr(spectral_blocks, "_solve_stack", lambda blocks, side, dev: calls.append(side) or solve(blocks, side, dev))
    sets = [spectral_blocks.BlockSet(b, groups, True), spectral_blocks.BlockSet(bw, groups, False)]
    together = spectral_blocks.top2_block_sets(sets)
    assert len(calls) < len(groups)  # 2·len(groups) blocks
    with ThreadPoolExecutor(2) as pool:
        pooled = spectral_blocks.top2_block_sets(sets, executor=pool)
    for m, binary, joint, in_pool in ((b, True, together[0], pooled[0]), (bw, False, together[1], pooled[1])):
        np.testing.assert_array_equal(joint, top2_blocks(m, groups, binary=binary))
        np.testing.assert_array_equal(joint, in_pool)
        alone = np.array([top2_blocks(m, [g], binary=binary)[0] for g in groups])
        np.testing.assert_array_equal(joint, alone)


def test_zero_padding_does_not_change_the_top_two():
    """A block's Gram zero-padded in its stack: an all-ones 2×5 block (σ = √10, 0) in an 8×8 stack,
    and random blocks of every side up to the padding limit against dense SVD."""
    ones = spectral_blocks._Block((0, 0), (2, 5), np.arange(10), np.ones(10), False, 0, True)
    (_, s), = spectral_blocks._solve_stack([ones], spectral_blocks._padded_side(2), "cpu")
    assert spectral_blocks._padded_side(2) == 8
    np.testing.assert_allclose(s, [np.sqrt(10.0), 0.0], atol=1e-12)
    rng = np.random.default_rng(19)
    for side in range(2, spectral_blocks._PAD_MAX_SIDE + 2):
        a = sp.csr_matrix((rng.random((side, 3 * side)) < 0.3) * rng.random((side, 3 * side)))
        a = a[np.flatnonzero(np.diff(a.indptr))]
        ref = svd_top2(a.toarray())
        ours = top2_blocks(a, [np.arange(a.shape[0])])[0]
        assert np.all(np.abs(ours - ref) <= 1e-9 * ref[0]), (side, ours, ref)


def test_blocks_cover_closed_form_wide_and_tall_cases():
    """One-row / one-column blocks (closed form), blocks with more rows than touched columns."""
    rng = np.random.default_rng(14)
    a = (rng.random((60, 8)) < 0.5) * rng.random((60, 8))
    a[0] = 0
    a[1, :] = 0
    a[1, 3] = 2.0
    m = sp.csr_matrix(a)
    empty = np.array([], dtype=np.int64)
    groups = [empty, np.arange(0, 2), np.arange(2, 40), empty, np.array([40]), np.arange(41, 60), empty]
    ours = top2_blocks(m, groups)
    for g, s in zip(groups, ours):
        ref = svd_top2(a[g]) if len(g) else np.zeros(2)
        assert np.all(np.abs(s - ref) <= 1e-9 * ref[0]), (g, s, ref)


METRIC_KEYS = ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg", "sigma1", "sigma2", "lambda_sigma1",
               "lambda_sigma2", "imdb", "ism", "delta_s")


def assert_same_metrics(a: dict, b: dict):
    scale = max(abs(a.get("sigma1", 0.0)), abs(a.get("lambda_sigma1", 0.0)), 1.0)
    for key in METRIC_KEYS:
        if key in a:
            assert (np.isnan(a[key]) and np.isnan(b[key])) or abs(a[key] - b[key]) <= 1e-9 * scale, key
    assert a["reason"] == b["reason"]


def test_torch_device_code_path_equals_cpu_route(monkeypatch):
    """The device route (torch float64 Grams, batched torch eigvalsh) run on the CPU."""
    rng = np.random.default_rng(15)
    mask = rng.random((48, 24, 3, 3)) < 0.2
    weight = rng.standard_normal(mask.shape) * 1e-310  # the device route scales too (by 2^1030)
    cpu = {c: sift_graph.layer_metrics(mask, weight, convention=c) for c in sift_graph.CONVENTIONS}
    monkeypatch.setattr(spectral, "_use_torch", lambda device: True)
    stacks = []  # spectral_blocks holds its own reference to _use_torch
    monkeypatch.setattr(spectral_blocks, "_use_torch", lambda device: stacks.append(device) or True)
    with record_routes() as taken:
        dev = {c: sift_graph.layer_metrics(mask, weight, convention=c) for c in sift_graph.CONVENTIONS}
    assert "gram-device" in taken and "blocks" in taken and stacks  # the batched torch stacks ran
    for c in sift_graph.CONVENTIONS:
        assert_same_metrics(cpu[c], dev[c])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_route_equals_cpu_route_and_dense_svd():
    rng = np.random.default_rng(16)
    mask = rng.random((96, 64, 3, 3)) < 0.1
    weight = rng.standard_normal(mask.shape).astype(np.float32)
    for c in sift_graph.CONVENTIONS:
        assert_same_metrics(sift_graph.layer_metrics(mask, weight, convention=c),
                            sift_graph.layer_metrics(mask, weight, convention=c, device="cuda"))
    b = sift_graph.biadjacency(mask * np.abs(weight))
    s = top2_singular_values(b, device="cuda")
    ref = svd_top2(b.toarray())
    assert np.all(np.abs(np.array(s) - ref) <= 1e-9 * ref[0])
    b, bw, groups = class_blocks(seed=17)
    for g, s in zip(groups, top2_blocks(bw, groups, device="cuda")):
        ref = svd_top2(dense_rows(bw, g))
        assert np.all(np.abs(s - ref) <= 1e-9 * ref[0])


def test_every_route_is_deterministic(monkeypatch):
    """Same input, same bits: each whole-layer route and the batched class route."""
    rng = np.random.default_rng(18)
    a = sp.csr_matrix((rng.random((600, 150)) < 0.1) * np.abs(rng.standard_normal((600, 150))))
    for route in ("gram-dense64", "gram-sparse", "lanczos", "arpack"):
        monkeypatch.setattr(spectral, "_route", lambda b, binary, r=route: "lanczos" if r == "arpack" else r)
        monkeypatch.setattr(spectral, "_LANCZOS_MAX_STEPS", 10 if route == "arpack" else 400)
        with record_routes() as taken:
            assert top2_singular_values(a) == top2_singular_values(a)
        assert taken[-1] == route
    monkeypatch.setattr(spectral, "_route", lambda b, binary: "gram-dense64")  # Lanczos on the Gram
    monkeypatch.setattr(spectral, "_eigh_seconds", lambda m: np.inf)
    assert top2_singular_values(a) == top2_singular_values(a)
    groups = [np.arange(i, i + 20 + i % 7) for i in range(0, 500, 30)]
    np.testing.assert_array_equal(top2_blocks(a, groups), top2_blocks(a, groups))


def test_check_spacing_follows_the_error_bound():
    """Checks come every `every` steps until the bound's decay predicts the tolerance sooner."""
    assert spectral._steps_to_next_check(1e6, None, 20, 5) == 5  # no history
    assert spectral._steps_to_next_check(1e6, (15, 1e5), 20, 5) == 5  # the bound grew
    # 10 → 2.5 in 2 steps (halving per step): 2.5 → 1 needs 2 more steps, within `every`
    assert spectral._steps_to_next_check(2.5, (18, 10.0), 20, 5) == 2
    assert spectral._steps_to_next_check(1e9, (10, 1e10), 20, 5) == 5  # far: the cost model's spacing


def test_sets_share_entry_positions_only_for_the_same_groups():
    """Two sets of one structure whose groups are rows of 2-D arrays (fresh views at every
    iteration) with different contents: each keeps its own blocks."""
    rng = np.random.default_rng(21)
    a = sp.csr_matrix((rng.random((12, 30)) < 0.4).astype(float))
    w = a.copy()
    w.data = np.abs(rng.standard_normal(w.nnz))
    first, second = np.arange(12).reshape(3, 4), np.arange(12)[::-1].reshape(3, 4)
    out = spectral_blocks.top2_block_sets([spectral_blocks.BlockSet(a, first, True),
                                           spectral_blocks.BlockSet(w, second, False)])
    for got, b, groups in ((out[0], a, first), (out[1], w, second)):
        for row, g in zip(got, groups):
            np.testing.assert_allclose(row, svd_top2(b[g].toarray()), rtol=0, atol=1e-9 * row[0])
