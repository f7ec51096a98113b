"""Seconds per snapshot of ``sift_graph.analyze`` on a Sparse Wide ResNet-18 at 90 % sparsity, and
snapshots per second of the Dask route against the local route, measured in the same run.

Writes N synthetic snapshots (random masks at 90 %, random weights) with the real tensor shapes of
sift_train's Sparse Wide ResNet-18 (CIFAR-100, paper variant) as a run folder in a temporary
directory (docs/run-format.md), then times, each with a cold cache:

* baseline: the metrics of every tensor of one snapshot (``masked_layer_metrics``, what the routes
  run on the decoded mask and values), in this process, one BLAS thread;
* the local route: ``analyze --jobs W`` (W worker processes, one BLAS thread each);
* the Dask route: ``analyze`` with a ``dask.distributed.Client`` of a ``LocalCluster`` of W worker
  processes, one thread each (cluster start-up timed apart), with Dask's default worker
  environment and with ``MALLOC_MMAP_THRESHOLD_`` raised to 32 MiB (docs/analyze.md);
* ``analyze`` again on the warm cache.

    python benchmarks/bench_analyze.py [--snapshots 6] [--workers 2] [--keep DIR]

Goal (issue 8): <= 5 s per snapshot on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import sift_graph
from _common import blas_kernels, cpu_model  # benchmarks/ is on sys.path when run as a script
from sift_graph.layer import masked_layer_metrics

SPARSITY = 0.9
#: Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which on glibc also fixes the mmap threshold
#: at 128 KiB (docs/analyze.md, "Beyond one machine"); this raises it again for the second Dask row.
MMAP_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_"
GOAL_S_PER_SNAPSHOT = 5.0


def wide_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """Shapes of the sparse tensors of sift_train's Sparse Wide ResNet-18 at 90 % (no memory used)."""
    from sift_train import sparse_parameters
    from sift_train.models import build_model

    model = build_model("resnet18", in_shape=(3, 32, 32), num_classes=100, family="wide",
                        sparsity=SPARSITY, device="meta")
    return {name: tuple(p.shape) for name, p in sparse_parameters(model).items()}


def write_snapshot(run: Path, step: int, shapes, rng) -> None:
    arrays, names = {}, list(shapes)
    for name, shape in shapes.items():
        mask = rng.random(shape, dtype=np.float32) >= SPARSITY
        arrays[f"{name}/shape"] = np.asarray(shape, dtype=np.int64)
        arrays[f"{name}/mask"] = np.packbits(mask.reshape(-1), bitorder="big")
        arrays[f"{name}/values"] = rng.standard_normal(int(mask.sum()), dtype=np.float32) * 0.05
    meta = {"step": step, "epoch": step / 390, "test_acc": 0.5 + step / 1e5, "reason": "every",
            "tensors": names}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(run / "snapshots" / f"step_{step:08d}.npz", **arrays)


def make_run(root: Path, n: int, shapes) -> Path:
    run = root / "wrn18-wide-90"
    (run / "snapshots").mkdir(parents=True)
    config = {"model": "resnet18", "dataset": "cifar100", "family": "wide", "sparsity": SPARSITY,
              "variant": "paper", "method": "rigl", "seed": 0}
    (run / "config.json").write_text(json.dumps({
        "format": "sift-run", "format_version": 1, "config": config,
        "sparse_tensors": {k: {"shape": list(v)} for k, v in shapes.items()}}))
    rng = np.random.default_rng(0)
    for i in range(n):
        write_snapshot(run, i * 1000, shapes, rng)
    return run


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="local processes = Dask workers")
    parser.add_argument("--keep", help="build the run folder here and keep it (default: a temp dir)")
    args = parser.parse_args()
    n, workers = args.snapshots, args.workers
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_analyze_"))
    try:
        shapes = wide_resnet18_shapes()
        run, t_write = timed(lambda: make_run(root, n, shapes))
        size = sum(f.stat().st_size for f in (run / "snapshots").iterdir()) / 2**20
        print(f"CPU: {cpu_model()}; BLAS: {blas_kernels()}; sift {sift_graph.__version__}")
        print(f"wrote {n} snapshots ({size:.0f} MiB, {len(shapes)} sparse tensors, "
              f"{sum(np.prod(s) for s in shapes.values()) / 1e6:.0f} M weights each) in {t_write:.1f} s")

        snapshot = sift_graph.load_run(run).snapshots[0]
        tensors, t_decode = timed(lambda: list(snapshot.iter_values()))
        with threadpool_limits(1):
            _, base = timed(lambda: [masked_layer_metrics(m, v) for _, m, v in tensors])
        del tensors

        common = dict(figures=False, progress=False)
        local, t_local = timed(lambda: sift_graph.run_analysis([run], out=root / "local", jobs=workers, **common))
        warm, t_warm = timed(lambda: sift_graph.run_analysis([run], out=root / "local", jobs=workers, **common))
        assert local.computed == n and warm.computed == 0 and not local.problems, local.problems

        rows = [("baseline: metrics of 1 snapshot, in-process, 1 thread", base, 1),
                ("decode 1 snapshot, npz -> masks + values (part of every route)", t_decode, 1),
                (f"local route: analyze --jobs {workers} (cold cache)", t_local, n)]
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            print("dask.distributed not installed (pip install 'sift[dask]'): no Dask route")
        else:
            import dask

            for label, environ in (("Dask defaults", {}), ("mmap threshold 32 MiB", {MMAP_KEY: 2**25})):
                with dask.config.set(environ):
                    cluster, t_start = timed(lambda: LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        silence_logs=logging.CRITICAL))
                with cluster, Client(cluster) as client:
                    remote, t_dask = timed(lambda: sift_graph.run_analysis(
                        [run], out=root / f"dask-{len(rows)}", client=client, **common))
                assert remote.computed == n and remote.layers.equals(local.layers)
                rows.append((f"Dask: LocalCluster {workers} workers x 1 thread, {label}", t_dask, n))
                rows.append(("  the same + cluster start-up (the local route starts its pool)", t_dask + t_start, n))
            print("Dask route: tables equal the local route's")
        rows.append(("analyze again (warm cache, nothing computed)", t_warm, n))

        print(f"\n{'what':<66} {'wall s':>8} {'snaps':>6} {'s/snapshot':>11} {'snap/s':>8} {'vs local':>9}")
        local_rate = n / t_local
        for what, wall, count in rows:
            print(f"{what:<66} {wall:8.2f} {count:6d} {wall / count:11.3f} {count / wall:8.3f} "
                  f"{count / wall / local_rate:8.2f}x")
        per = t_local / n
        print(f"\ngoal <= {GOAL_S_PER_SNAPSHOT:.0f} s/snapshot on {workers} cores: "
              f"{'met' if per <= GOAL_S_PER_SNAPSHOT else 'NOT met'} ({per:.2f} s/snapshot, local route)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # guard required: the analysis workers re-import this module
    main()
