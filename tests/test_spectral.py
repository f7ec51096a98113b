"""top2_singular_values against dense float64 SVD, closed forms and networkx (metrics.md §8, §9.2)."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

import sift_graph
from sift_graph import spectral
from sift_graph.bipartite import degree_classes, dense_rows
from sift_graph.spectral import _gram, top2_dense, top2_singular_values


def svd_top2(a: np.ndarray) -> np.ndarray:
    with spectral.blas_threads(1):  # multi-threaded LAPACK crawls on a loaded 2-core machine
        s = np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)
    return np.concatenate([s, [0.0, 0.0]])[:2]


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


def test_large_layer_dense_gram_path_matches_dense_svd(monkeypatch):
    """Several BLAS row chunks, float32 0/1 Gram route and float64 weighted route."""
    monkeypatch.setattr(spectral, "_CHUNK_ROWS", 256)
    rng = np.random.default_rng(7)
    mask = rng.random((1200, 300)) < 0.3  # dense cost wins at this density
    assert_matches_svd(mask.astype(float))
    assert_matches_svd(mask * np.abs(rng.standard_normal(mask.shape)))


def test_large_layer_sparse_gram_path_matches_dense_svd():
    rng = np.random.default_rng(8)
    mask = rng.random((1500, 300)) < 0.01  # sparse Gram wins at this density
    assert_matches_svd(mask * np.abs(rng.standard_normal(mask.shape)))


def test_arpack_path_for_wide_layers_matches_dense_svd(monkeypatch):
    monkeypatch.setattr(spectral, "GRAM_MAX_SIDE", 100)  # force svds(arpack) on a cheap matrix
    rng = np.random.default_rng(9)
    mask = rng.random((500, 300)) < 0.1
    assert_matches_svd(mask.astype(float))
    assert_matches_svd(mask * np.abs(rng.standard_normal(mask.shape)))


def test_large_weighted_layers_go_to_arpack_and_match_dense_svd(monkeypatch):
    """Weighted matrices above the Gram-cost threshold use svds; 0/1 ones keep the Gram."""
    monkeypatch.setattr(spectral, "_ARPACK_MIN_FLOAT_GRAM_MACS", 1e6)
    calls = []
    arpack = spectral._top2_arpack
    monkeypatch.setattr(spectral, "_top2_arpack", lambda b: calls.append(b.shape) or arpack(b))
    rng = np.random.default_rng(10)
    mask = rng.random((900, 200)) < 0.1
    assert_matches_svd(mask.astype(float))
    assert calls == []
    assert_matches_svd(mask * np.abs(rng.standard_normal(mask.shape)))
    assert calls == [(900, 200)]


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


def test_degree_class_blocks_match_dense_svd():
    """The per-class route (dense block, Gram of the smaller side) of a conv layer, mask and |W|."""
    rng = np.random.default_rng(12)
    mask = rng.random((40, 30, 3, 3)) < 0.15
    b = sift_graph.biadjacency(mask)
    bw = sift_graph.biadjacency(mask * np.abs(rng.standard_normal(mask.shape)))
    checked = 0
    for d, idx in degree_classes(b):
        for block, binary in ((dense_rows(b, idx), True), (dense_rows(bw, idx), False)):
            ours = np.array(top2_dense(block, binary=binary))
            ref = svd_top2(block)
            assert np.all(np.abs(ours - ref) <= 1e-9 * max(ref[0], 1e-300)), (d, ours, ref)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("shape,chunk", [((700, 90), 90 * 256), ((3000, 200), 2**25)])
def test_int8_and_float_gram_routes_agree_exactly(monkeypatch, shape, chunk):
    rng = np.random.default_rng(13)
    b = sp.csr_matrix((rng.random(shape) < 0.2).astype(float))
    monkeypatch.setattr(spectral, "_INT_GEMM_MIN_MACS", 0)
    monkeypatch.setattr(spectral, "_INT_GEMM_CHUNK_ENTRIES", chunk)  # several chunks for the first
    g_int = _gram(b)
    monkeypatch.setattr(spectral, "_INT_GEMM_MIN_MACS", float("inf"))
    np.testing.assert_array_equal(g_int, _gram(b))
    np.testing.assert_array_equal(g_int, (b.T @ b).toarray())
