"""Process-wide BLAS thread policy of the metric code (``../shared/specs/ecosystem.md`` §4.4).

Many small eigenproblems run several times slower with more than one BLAS thread on a loaded
2-core machine, so metric code runs inside :func:`metric_threads` (single-threaded BLAS). Large
dense products may go back up to the thread count the *caller* had (:func:`blas_threads` with
``None``), so a worker pinned to 1 thread by its caller stays at 1.
"""
from __future__ import annotations

import collections
import contextlib
import threading
from concurrent.futures import Future

from threadpoolctl import ThreadpoolController

__all__ = ["metric_threads", "allowed_threads", "single_threaded_blas_products", "blas_threads", "InlineExecutor",
           "CallerRunsPool"]

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


class CallerRunsPool:
    """A ``concurrent.futures``-like executor whose ``workers`` threads take jobs in submission order,
    and where a thread waiting on a result (``future.result()``) runs queued jobs meanwhile.

    With one worker, the caller and the worker are two busy threads: while the caller prepares more
    work the worker computes, and once it waits it computes too, so a 2-core machine never runs three
    threads that contend for the cores and the GIL (measured 6 % faster than a 2-thread
    ``ThreadPoolExecutor`` beside the caller on ``hoang2023a.metrics``). Use as a context manager:
    leaving it cancels jobs not started and joins the workers.
    """

    def __init__(self, workers: int = 1):
        self._jobs: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn, *args, **kwargs) -> Future:
        future = _HelpingFuture(self)
        with self._wake:
            if self._closed:
                raise RuntimeError("submit() on a closed CallerRunsPool")
            self._jobs.append((fn, args, kwargs, future))
            self._wake.notify()
        return future

    def run_one(self) -> bool:
        """Run the oldest queued job in this thread; False if none was queued."""
        try:
            fn, args, kwargs, future = self._jobs.popleft()
        except IndexError:
            return False
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 (delivered to whoever asks for the result)
                future.set_exception(exc)
        return True

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if not self._jobs:
                    return
            self.run_one()

    def __enter__(self) -> CallerRunsPool:
        return self

    def __exit__(self, *exc) -> None:
        with self._wake:
            self._closed = True
            while self._jobs:
                self._jobs.popleft()[3].cancel()
            self._wake.notify_all()
        for thread in self._threads:
            thread.join()


class _HelpingFuture(Future):
    """A future whose ``result()`` (without a timeout) runs the pool's queued jobs while its own is not done."""

    def __init__(self, pool: CallerRunsPool):
        super().__init__()
        self._pool = pool

    def result(self, timeout=None):
        while timeout is None and not self.done() and self._pool.run_one():  # with a timeout: only wait
            pass
        return super().result(timeout)
