"""Process-wide BLAS thread policy of the metric code (``../shared/specs/ecosystem.md`` §4.4).

Many small eigenproblems run several times slower with more than one BLAS thread on a loaded
2-core machine, so metric code runs inside :func:`metric_threads` (single-threaded BLAS). Large
dense products may go back up to the thread count the *caller* had (:func:`blas_threads` with
``None``), so a worker pinned to 1 thread by its caller stays at 1.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future

from threadpoolctl import ThreadpoolController

__all__ = ["metric_threads", "allowed_threads", "single_threaded_blas_products", "blas_threads", "InlineExecutor"]

_CONTROLLER = ThreadpoolController()
#: BLAS threads a large product may use inside :func:`metric_threads` (the caller's own limit).
_allowed_threads = 1


def _current_blas_threads() -> int:
    counts = [lib["num_threads"] for lib in _CONTROLLER.info() if lib.get("user_api") == "blas"]
    return max(counts, default=1)


@contextlib.contextmanager
def metric_threads():
    """Run metric code with single-threaded BLAS, remembering the caller's thread count."""
    global _allowed_threads
    previous, _allowed_threads = _allowed_threads, _current_blas_threads()
    try:
        with _CONTROLLER.limit(limits=1):
            yield
    finally:
        _allowed_threads = previous


def allowed_threads() -> int:
    """BLAS threads the caller of :func:`metric_threads` allowed (1 outside it)."""
    return _allowed_threads


@contextlib.contextmanager
def single_threaded_blas_products():
    """Keep large products single-threaded too (while two Python threads share the cores)."""
    global _allowed_threads
    previous, _allowed_threads = _allowed_threads, 1
    try:
        yield
    finally:
        _allowed_threads = previous


def blas_threads(n: int | None = 1):
    """Context manager limiting BLAS/OpenMP threads to ``n`` (``None``: as many as the caller of
    :func:`metric_threads` allowed)."""
    return _CONTROLLER.limit(limits=_allowed_threads if n is None else n)


class InlineExecutor:
    """The ``concurrent.futures`` executor interface, run in the calling thread (no pool)."""

    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future
