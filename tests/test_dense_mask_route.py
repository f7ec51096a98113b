"""spectral.top2_binary_dense (the mask's whole-layer solve straight from the dense mask) against
dense SVD and bit for bit against top2_singular_values, and hoang2023a.metrics_of_mask's two-thread
path against the serial one, including where the dense route does not apply."""
import numpy as np
import pytest
import scipy.sparse as sp

import sift_graph
from sift_graph import hoang2023a, spectral
from sift_graph.spectral import record_routes, top2_binary_dense, top2_singular_values

from dense_svd import svd_top2


@pytest.mark.parametrize("shape", [(40, 300), (300, 40), (64, 64)])  # Gram over rows, over columns, a tie
def test_equals_the_sparse_route_bit_for_bit_and_dense_svd(shape):
    rng = np.random.default_rng(sum(shape))
    p = rng.random(shape) < 0.2
    p[3] = False  # an isolated row and column: dropped from the Gram as the sparse route drops them
    p[:, 5] = False
    with record_routes() as routes:
        s = top2_binary_dense(p)
    assert s is not None and routes == ["gram-dense32"]
    assert tuple(float(x) for x in s) == top2_singular_values(sp.csr_matrix(p.T.astype(float)))
    ref = svd_top2(p)
    assert np.all(np.abs(s - ref) <= 1e-9 * ref[0])


def test_declines_where_the_sparse_route_would_differ(monkeypatch):
    rng = np.random.default_rng(1)
    two = np.zeros((40, 60), dtype=bool)  # two components: the sparse route solves them apart
    two[:20, :30] = rng.random((20, 30)) < 0.3
    two[20:, 30:] = rng.random((20, 30)) < 0.3
    assert top2_binary_dense(two) is None
    assert top2_binary_dense(np.zeros((5, 5), dtype=bool)) is None
    assert top2_binary_dense(np.ones((1, 9), dtype=bool)) is None  # one row: closed form
    assert top2_binary_dense(rng.random((20, 20))) is None  # not a bool mask
    monkeypatch.setitem(spectral._RATES, "gemm32", 1.0)  # dense Grams priced out: another route
    assert top2_binary_dense(rng.random((30, 50)) < 0.3) is None


@pytest.mark.parametrize("spgemm_rate", [1e8, 1e10, 2e10, 3e10, 1e12])
def test_applies_exactly_where_the_sparse_route_takes_the_dense_gram(monkeypatch, spgemm_rate):
    """The dense route decides from a Cauchy-Schwarz bound on Σ degree² where that settles the route
    and from the exact degrees otherwise: it must answer exactly where the sparse route takes
    gram-dense32, also with skewed degrees (where the bound and the exact sum differ most) and at
    sparse-product rates that put the two Gram routes near their break-even point."""
    monkeypatch.setitem(spectral._RATES, "spgemm", spgemm_rate)
    rng = np.random.default_rng(int(spgemm_rate) % 1000)
    seen = set()
    for _ in range(16):
        n_out, n_in = (int(v) for v in rng.integers(6, 90, size=2))
        p = rng.random((n_out, n_in)) < rng.uniform(0.08, 0.5)
        if rng.random() < 0.5:  # a few full columns and rows: skewed degrees on both sides
            p[:, : int(rng.integers(1, 4))] = True
            p[: int(rng.integers(1, 3))] = True
        with record_routes() as routes:
            top2_singular_values(sp.csr_matrix(p.T.astype(float)))
        seen.add(routes[0])
        s = top2_binary_dense(p)
        assert (s is not None) == (routes == ["gram-dense32"]), (p.shape, routes)
        if s is not None:
            assert tuple(float(x) for x in s) == top2_singular_values(sp.csr_matrix(p.T.astype(float)))
    if spgemm_rate in (1e10, 2e10):
        assert {"gram-dense32", "gram-sparse"} <= seen  # near break-even both routes occur


@pytest.mark.parametrize("case", ["dense-route", "two-components", "lanczos-route"])
def test_two_thread_path_equals_the_serial_result(monkeypatch, case):
    rng = np.random.default_rng(7)
    mask = rng.random((48, 24, 3, 3)) < 0.2
    if case == "two-components":
        mask[:24, 12:] = False
        mask[24:, :12] = False
    w = rng.standard_normal(mask.shape)
    if case == "lanczos-route":
        monkeypatch.setitem(spectral._RATES, "gemm32", 1.0)
        monkeypatch.setitem(spectral._RATES, "spgemm", 1.0)
    applies = top2_binary_dense(mask.reshape(48, -1)) is not None
    assert applies == (case == "dense-route")  # elsewhere the worker falls back to the sparse route
    serial = sift_graph.layer_metrics(mask, w)
    monkeypatch.setattr(hoang2023a, "PARALLEL_MIN_EDGES", 0)
    monkeypatch.setattr(hoang2023a, "allowed_threads", lambda: 2)
    calls = []
    dense = hoang2023a.top2_binary_dense
    monkeypatch.setattr(hoang2023a, "top2_binary_dense", lambda p: calls.append(p.shape) or dense(p))
    searches = []  # component searches: |W⊙M| skips its own where the dense route showed the mask connected
    components = spectral._components
    monkeypatch.setattr(spectral, "_components", lambda b: searches.append(b.shape) or components(b))
    assert repr(sift_graph.layer_metrics(mask, w)) == repr(serial)
    assert repr(sift_graph.masked_layer_metrics(mask, w[mask])) == repr(serial)
    assert calls == [(48, 24 * 9)] * 2
    assert (searches == []) == (case == "dense-route")


def test_an_error_while_building_reaches_the_caller_and_frees_the_worker(monkeypatch):
    monkeypatch.setattr(hoang2023a, "PARALLEL_MIN_EDGES", 0)
    monkeypatch.setattr(hoang2023a, "allowed_threads", lambda: 2)
    monkeypatch.setattr(hoang2023a, "top2_binary_dense", lambda p: None)  # the worker waits for bm

    def build():
        raise ValueError("layer fc: corrupt values")

    present = np.ones((8, 8), dtype=bool)
    with pytest.raises(ValueError, match="corrupt values"):
        hoang2023a.metrics_of_mask(present, build, True)
