"""sift_graph.threads.CallerRunsPool: every job runs once, results and errors reach the caller,
the waiting caller runs queued jobs itself, and leaving the pool cancels jobs not started."""
import threading

import pytest

from sift_graph.threads import CallerRunsPool


def test_every_job_runs_once_and_results_come_back_in_order():
    ran = []
    with CallerRunsPool(workers=1) as pool:
        futures = [pool.submit(lambda i=i: ran.append(i) or i * i) for i in range(200)]
        assert [f.result() for f in futures] == [i * i for i in range(200)]
    assert sorted(ran) == list(range(200))


def test_the_waiting_caller_runs_queued_jobs():
    release = threading.Event()
    ran_by = []
    with CallerRunsPool(workers=1) as pool:
        blocker = pool.submit(release.wait, 10)  # keeps the worker busy
        while pool._jobs:  # wait until the worker has taken it
            pass
        later = [pool.submit(lambda: ran_by.append(threading.current_thread()) or 1) for _ in range(5)]
        assert sum(f.result() for f in later) == 5
        release.set()
        assert blocker.result() is True
    assert ran_by == [threading.main_thread()] * 5


def test_an_exception_reaches_result_and_other_jobs_still_run():
    def boom():
        raise ValueError("layer conv1: bad block")

    with CallerRunsPool(workers=1) as pool:
        bad = pool.submit(boom)
        good = pool.submit(lambda: 7)
        with pytest.raises(ValueError, match="bad block"):
            bad.result()
        assert good.result() == 7


def test_leaving_the_pool_cancels_jobs_not_started_and_refuses_new_ones():
    release = threading.Event()
    with CallerRunsPool(workers=1) as pool:
        blocker = pool.submit(release.wait, 10)
        while pool._jobs:  # the worker has taken the blocker
            pass
        queued = pool.submit(lambda: 1)
        threading.Timer(0.2, release.set).start()  # the exit joins the busy worker
    assert queued.cancelled() and blocker.result() is True
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: 1)


def test_result_with_a_timeout_only_waits():
    import concurrent.futures
    import time

    release = threading.Event()
    with CallerRunsPool(workers=1) as pool:
        pool.submit(release.wait, 10)
        while pool._jobs:
            pass
        slow = pool.submit(time.sleep, 1.0)
        start = time.perf_counter()
        with pytest.raises(concurrent.futures.TimeoutError):
            slow.result(timeout=0.05)
        assert time.perf_counter() - start < 0.5  # did not run the 1 s job itself
        release.set()
        assert slow.result() is None
