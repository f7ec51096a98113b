"""Stage 4: metrics of the snapshots missing from the cache.

Three routes, one function: in this process, in local worker processes (``forkserver``, one BLAS
thread each: the parallelism is over snapshots), or on a Dask cluster (``client``). Every route runs
:func:`compute_snapshot`, so every route gives the same rows. The snapshot's bytes are read once,
hashed (the cache key of exactly the content analysed) and decoded from memory.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

from tqdm.auto import tqdm

from ..model import layer_row
from ..runs import RunFormatError, Snapshot
from .cache import CacheEntries, signature
from .options import UsageError, distributed_module

_LIMITS = None  # threadpoolctl limits of a worker process, kept alive for its lifetime


@dataclass(frozen=True)
class SnapshotResult:
    """Rows of one snapshot (``None`` if it was refused, with the one-line ``problem``), the sha256 of
    the bytes they belong to, the file's ``stat`` signature when it was read (for the cache index),
    and whether the rows came from the cache (that content was computed before, at another path or
    under another signature)."""

    sha256: str
    rows: list[dict] | None
    problem: str = ""
    signature: tuple[int, ...] = ()
    cached: bool = False


def compute_snapshot(snapshot: Snapshot, convention: str, device: str = "cpu",
                     layers: str = "sparse", entries: CacheEntries | None = None) -> SnapshotResult:
    """``layer_metrics`` of every sparse tensor of one snapshot (``layers="all"``: and of every dense
    weight, mask all True): one row (dict) per layer, its ``kind`` ``"sparse"`` or ``"dense"``.
    The file is read once; ``entries``: the cache's entries, looked up by the sha256 of those bytes
    before computing anything (:meth:`CacheEntries.get`: for ``sparse`` also an ``all`` entry's sparse
    rows); for ``all`` the sparse rows of a ``sparse`` entry are taken and only the dense weights computed."""
    try:
        st = snapshot.path.stat()
        if st.st_size > snapshot.max_bytes:
            return SnapshotResult("", None, f"{snapshot.path}: {st.st_size} bytes, over the snapshot limit "
                                            f"of {snapshot.max_bytes} (--max-snapshot-bytes raises it)")
        data = snapshot.path.read_bytes()
    except OSError as exc:
        return SnapshotResult("", None, f"{snapshot.path}: unreadable ({exc})")
    sha = hashlib.sha256(data).hexdigest()
    read_as = tuple(signature(st))
    if entries is not None and (rows := entries.get(sha)) is not None:
        return SnapshotResult(sha, rows, signature=read_as, cached=True)
    known = entries.sparse_rows(sha) if entries is not None and layers == "all" else None
    try:
        dense = set(snapshot.dense_tensors)
        rows = known or []  # an `all` run after a `sparse` one: its sparse rows
        rows += [{**layer_row(name, mask, None, values=values, convention=convention, device=device),
                  "kind": "dense" if name in dense else "sparse"}
                 for name, mask, values in snapshot.iter_values(data, dense=layers == "all", sparse=known is None)]
    except RunFormatError as exc:
        return SnapshotResult(sha, None, str(exc))
    except ValueError as exc:
        return SnapshotResult(sha, None, f"{snapshot.path}: {exc}")
    return SnapshotResult(sha, rows, signature=read_as)


OnResult = Callable[[object, SnapshotResult], None]


def _bar(total: int, progress: bool) -> tqdm:
    return tqdm(total=total, unit="snapshot", desc="sift analyze", disable=not progress or not total)


def _pin_threads() -> None:
    """Worker initializer: one BLAS / torch thread per process (parallelism is over snapshots)."""
    from threadpoolctl import threadpool_limits

    global _LIMITS
    _LIMITS = threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def compute_local(todo: dict[object, Snapshot], *, convention: str, device: str, workers: int,
                  on_result: OnResult, progress: bool, layers: str = "sparse",
                  entries: CacheEntries | None = None) -> None:
    """:func:`compute_snapshot` of every ``todo`` value, in-process or in ``workers`` processes."""
    with _bar(len(todo), progress) as bar:
        if workers <= 1 or len(todo) <= 1:
            for key, snapshot in todo.items():
                on_result(key, compute_snapshot(snapshot, convention, device, layers, entries))
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("forkserver"),
                                 initializer=_pin_threads) as pool:
            futures = {pool.submit(compute_snapshot, snapshot, convention, device, layers, entries): key
                       for key, snapshot in todo.items()}
            try:
                for future in as_completed(futures):
                    on_result(futures[future], future.result())
                    bar.update()
            except BrokenProcessPool:
                raise RuntimeError(
                    "an analysis worker process died (out of memory, or a script calling analyze with "
                    "jobs > 1 without an `if __name__ == '__main__':` guard); finished snapshots are "
                    "cached, retry with fewer jobs") from None



@contextlib.contextmanager
def dask_client(client):
    """``client`` itself, or for a scheduler address a ``dask.distributed.Client`` of it, closed on exit
    (a :class:`UsageError` if the scheduler cannot be reached)."""
    if not isinstance(client, str):
        yield client
        return
    distributed = distributed_module()
    try:
        connected = distributed.Client(client, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {client} ({exc})") from None
    with connected:
        yield connected


def compute_on_dask(todo: dict[object, Snapshot], *, client, convention: str, device: str,
                    on_result: OnResult, progress: bool, layers: str = "sparse",
                    entries: CacheEntries | None = None) -> None:
    """:func:`compute_snapshot` of every ``todo`` value as Dask tasks of ``client``'s cluster.

    The workers read the snapshot files themselves: they must see the run folders at the same paths
    (a shared file system) and have sift installed. Results come back to this process, which alone
    writes the cache and the tables.
    """
    distributed = distributed_module()
    keys = list(todo)
    futures = client.map(compute_snapshot, [todo[k] for k in keys], convention=convention,
                         device=device, layers=layers, entries=entries, pure=False)
    where = {future.key: key for future, key in zip(futures, keys)}
    with _bar(len(todo), progress) as bar:
        for future in distributed.as_completed(futures):
            on_result(where[future.key], future.result())
            bar.update()
            future.release()
