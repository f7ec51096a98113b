"""sift_graph.lapack.top2_eigenvalues (LAPACK dsyevr through scipy's Cython LAPACK) against numpy's
dense eigensolver and a closed form, and its numpy fallback."""
import numpy as np
import pytest

from sift_graph import lapack


@pytest.mark.parametrize("n", [2, 3, 4, 7, 64, 65, 300])
def test_top_two_match_numpy_eigvalsh(n):
    rng = np.random.default_rng(n)
    b = rng.standard_normal((n, n + 5))
    g = b @ b.T
    ref = np.linalg.eigvalsh(g)[::-1][:2]
    got = lapack.top2_eigenvalues(g.copy())
    assert got.shape == (2,) and got[0] >= got[1]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref[0])


def test_closed_form_spectrum_with_a_tie():
    """J_n (all ones) + 3·I has eigenvalues n + 3 and 3 (n − 1 times): λ1 = n + 3, λ2 = 3."""
    n = 50
    g = np.ones((n, n)) + 3 * np.eye(n)
    np.testing.assert_allclose(lapack.top2_eigenvalues(g), [n + 3.0, 3.0], rtol=0, atol=1e-13 * (n + 3))


def test_any_memory_layout_and_dtype():
    rng = np.random.default_rng(5)
    b = rng.standard_normal((40, 60))
    g = b @ b.T
    ref = np.linalg.eigvalsh(g)[::-1][:2]
    for variant in (np.asfortranarray(g), g.astype(np.float32), g[::1, ::1].T):
        np.testing.assert_allclose(lapack.top2_eigenvalues(variant), ref, rtol=1e-6)


def test_numpy_fallback_when_scipy_does_not_export_dsyevr(monkeypatch):
    rng = np.random.default_rng(6)
    b = rng.standard_normal((30, 40))
    g = b @ b.T
    direct = lapack.top2_eigenvalues(g.copy())
    monkeypatch.setattr(lapack, "_dsyevr", lambda: None)
    np.testing.assert_allclose(lapack.top2_eigenvalues(g.copy()), direct, rtol=1e-13)


def test_dsyevr_is_found_on_this_scipy():
    """scipy ≥ 1.x exports dsyevr with the documented signature; otherwise speed would silently drop."""
    assert lapack.DSYEVR_AVAILABLE


def test_a_different_signature_is_not_called(monkeypatch):
    """If scipy ever exports dsyevr with other arguments, it is not called through ctypes."""
    monkeypatch.setattr(lapack, "_DSYEVR_SIGNATURE", "void (int *)")
    lapack._dsyevr.cache_clear()
    try:
        assert lapack._dsyevr() is None
        g = np.diag([5.0, 3.0, 1.0])
        np.testing.assert_allclose(lapack.top2_eigenvalues(g), [5.0, 3.0])
    finally:
        monkeypatch.undo()
        lapack._dsyevr.cache_clear()
    assert lapack._dsyevr() is not None


def test_read_only_and_non_contiguous_inputs_are_copied_not_written():
    rng = np.random.default_rng(8)
    b = rng.standard_normal((20, 30))
    g = b @ b.T
    ref = np.linalg.eigvalsh(g)[::-1][:2]
    frozen = g.copy()
    frozen.flags.writeable = False
    np.testing.assert_allclose(lapack.top2_eigenvalues(frozen), ref, rtol=1e-12)
    assert np.array_equal(frozen, g)  # untouched


def test_reads_the_lower_triangle_like_numpy():
    """A matrix whose upper triangle is garbage: both routes see the same symmetric matrix."""
    rng = np.random.default_rng(9)
    b = rng.standard_normal((6, 9))
    lower = np.tril(b @ b.T)
    x = lower + np.triu(rng.standard_normal((6, 6)) * 100, 1)
    sym = lower + np.tril(lower, -1).T
    np.testing.assert_allclose(lapack.top2_eigenvalues(x.copy()), np.linalg.eigvalsh(sym)[::-1][:2], rtol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(x)[::-1][:2], np.linalg.eigvalsh(sym)[::-1][:2], rtol=1e-12)


def test_float64_out_and_clear_errors(monkeypatch):
    g32 = np.diag([3.0, 1.0]).astype(np.float32)
    assert lapack.top2_eigenvalues(g32).dtype == np.float64
    monkeypatch.setattr(lapack, "_dsyevr", lambda: None)
    assert lapack.top2_eigenvalues(np.diag([5.0, 3.0, 1.0]).astype(np.float32)).dtype == np.float64
    for bad in (np.ones((1, 1)), np.ones((3, 4)), np.ones(3)):
        with pytest.raises(ValueError, match="square matrix"):
            lapack.top2_eigenvalues(bad)
