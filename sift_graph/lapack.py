"""The top two eigenvalues of a dense symmetric matrix by LAPACK ``dsyevr``, without holding the GIL.

Why: numpy's ``eigvalsh`` (LAPACK ``dsyevd``) computes *every* eigenvalue; its tridiagonal QR
(``dsterf``) is ~40 % of the time on the 100-300-node degree-class Grams, where two eigenvalues by
bisection (``dstebz``) cost ~10 %. ``scipy.linalg.eigh(driver="evr", subset_by_index=...)`` does
that, but its f2py wrapper holds the GIL, which serialises the 2-thread pool of
:func:`sift_graph.hoang2023a.metrics`. So ``dsyevr`` is called here through scipy's public Cython
LAPACK (``scipy.linalg.cython_lapack``, obtained as a ``scipy.LowLevelCallable``, the way scipy
itself reads exported Cython functions) and ``ctypes``, which releases the GIL during the call.

The signature is checked against the one scipy documents for ``dsyevr``; if scipy does not export
it, or it differs, :func:`top2_eigenvalues` falls back to ``numpy.linalg.eigvalsh`` (same values
within rounding). Single-threaded BLAS (:func:`sift_graph.threads.metric_threads`) keeps every
value deterministic.
"""
from __future__ import annotations

import ctypes
import functools
import re

import numpy as np

__all__ = ["top2_eigenvalues", "DSYEVR_AVAILABLE"]

#: ``dsyevr``'s C signature in ``scipy.linalg.cython_lapack`` (``d`` = double).
_DSYEVR_SIGNATURE = ("void (char *, char *, char *, int *, d *, int *, d *, d *, int *, int *, d *, int *, d *, "
                     "d *, int *, int *, d *, int *, int *, int *, int *)")


@functools.cache
def _dsyevr():
    """``dsyevr`` as a ctypes function (``None`` if scipy does not export it as documented)."""
    try:
        from scipy import LowLevelCallable
        from scipy.linalg import cython_lapack

        llc = LowLevelCallable.from_cython(cython_lapack, "dsyevr")
    except (ImportError, AttributeError, KeyError, ValueError):
        return None
    signature = re.sub(r"\b(__pyx_t_\w+_d|double)\b", "d", llc.signature)  # scipy's typedef of double
    if signature != _DSYEVR_SIGNATURE:
        return None
    # CPython's capsule API, as prototypes of our own (ctypes.pythonapi's shared attributes stay untouched)
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    pointer = get_pointer(llc.function, get_name(llc.function))
    if not pointer:
        return None
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 21)(pointer)  # CFUNCTYPE: the GIL is released


DSYEVR_AVAILABLE = _dsyevr() is not None


def top2_eigenvalues(a: np.ndarray) -> np.ndarray:
    """``[λ1, λ2]`` (float64), the two largest eigenvalues of the symmetric n × n matrix ``a``
    (n ≥ 2), descending. LAPACK ``dsyevr`` (tridiagonal reduction, then bisection for the two)
    without the GIL; like numpy's ``eigvalsh`` it reads the lower triangle. A writeable C-contiguous
    float64 ``a`` is overwritten; anything else is copied first. ``numpy.linalg.eigvalsh`` where
    ``dsyevr`` is not exported."""
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"expected a square matrix with at least 2 rows, got shape {a.shape}")
    n = a.shape[0]
    f = _dsyevr()
    if f is None or n < 3:
        return np.linalg.eigvalsh(np.asarray(a, dtype=np.float64))[::-1][:2].copy()
    a = np.require(a, np.float64, ["C_CONTIGUOUS", "WRITEABLE"])
    # A C-order buffer is the Fortran-order transpose: LAPACK's upper triangle is the lower one here.
    # integer arguments: n, il, iu, m (out), ldz, lwork, liwork, info (out)
    ints = np.array([n, n - 1, n, 0, 1, 70 * n, 10 * n, 0], dtype=np.intc)
    # real arguments: vl, vu, abstol (0: LAPACK's default, eps·‖T‖), then w (n), z (1), work (70·n ≥ (nb + 6)·n)
    reals = np.empty(3 + n + 1 + 70 * n)
    reals[:3] = 0.0
    iwork = np.empty(4 + 10 * n, dtype=np.intc)  # isuppz (4), then iwork
    pi, pr, pw = ints.ctypes.data, reals.ctypes.data, iwork.ctypes.data
    si, sr = ints.itemsize, reals.itemsize
    f(b"N", b"I", b"U", pi, a.ctypes.data, pi, pr, pr + sr, pi + si, pi + 2 * si, pr + 2 * sr, pi + 3 * si,
      pr + 3 * sr, pr + (3 + n) * sr, pi + 4 * si, pw, pr + (4 + n) * sr, pi + 5 * si, pw + 4 * si, pi + 6 * si,
      pi + 7 * si)
    if ints[7] != 0 or ints[3] != 2:
        raise np.linalg.LinAlgError(f"dsyevr failed (info {ints[7]}, {ints[3]} eigenvalues) on a {n}×{n} matrix")
    return reals[4:2:-1].copy()
