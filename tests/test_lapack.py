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
    np.testing.assert_allclose(lapack.top2_eigenvalues(g), [n + 3.0, 3.0], rtol=1e-14)


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
