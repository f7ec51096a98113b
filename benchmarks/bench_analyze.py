"""Snapshots per second of ``sift_graph.analyze`` on a Sparse Wide ResNet-18 at 90 % sparsity.

Writes N snapshots (default 20) of synthetic masks and weights with the real tensor shapes as a run
folder in a temporary directory (docs/run-format.md), then times ``analyze`` with the default
``--jobs`` (all cores), cold and with a warm cache. Baseline, measured in the same run: calling
``layer_metrics`` directly on every tensor of one snapshot in this process (no I/O, one
process, one BLAS thread, like each analysis worker).

    python benchmarks/bench_analyze.py [--snapshots 20] [--keep DIR]

Goal (issue 5): <= 10 s per snapshot on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import sift_graph

SPARSITY = 0.9
# Sparse Wide ResNet-18 (CIFAR) at s = 0.9: W = int(64*sqrt(10)) = 202, stages 202/404/808/1616
# (Sparse-IFT code R18:838-841, specs/sparse-ift.md §"Wide"). Sparse tensors: the 16 3x3 convs of
# the basic blocks and the 3 1x1 shortcut convs (stem and classifier stay dense).
STAGES = (202, 404, 808, 1616)


def wide_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    shapes, c_in = {}, STAGES[0]
    for i, width in enumerate(STAGES, start=1):
        for block in range(2):
            shapes[f"layer{i}.{block}.conv1.weight"] = (width, c_in if block == 0 else width, 3, 3)
            shapes[f"layer{i}.{block}.conv2.weight"] = (width, width, 3, 3)
            if block == 0 and c_in != width:
                shapes[f"layer{i}.0.shortcut.0.weight"] = (width, c_in, 1, 1)
        c_in = width
    return shapes


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


def make_run(root: Path, n: int) -> Path:
    shapes = wide_resnet18_shapes()
    run = root / "wrn18-wide-90"
    (run / "snapshots").mkdir(parents=True)
    config = {"model": "resnet18", "dataset": "cifar100", "family": "wide", "sparsity": SPARSITY,
              "variant": "official", "method": "rigl", "seed": 0}
    (run / "config.json").write_text(json.dumps({
        "format": "sift-run", "format_version": 1, "config": config,
        "sparse_tensors": {k: {"shape": list(v)} for k, v in shapes.items()}}))
    rng = np.random.default_rng(0)
    for i in range(n):
        write_snapshot(run, i * 1000, shapes, rng)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=20)
    parser.add_argument("--keep", help="build the run folder here and keep it (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_analyze_"))
    try:
        t0 = time.perf_counter()
        run = make_run(root, args.snapshots)
        size = sum(f.stat().st_size for f in (run / "snapshots").iterdir()) / 2**20
        print(f"wrote {args.snapshots} snapshots ({size:.0f} MiB, 19 tensors each) in "
              f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPU cores")

        snapshot = sift_graph.load_run(run).snapshots[0]
        t0 = time.perf_counter()
        tensors = snapshot.load()
        t_decode = time.perf_counter() - t0
        with threadpool_limits(1):
            t0 = time.perf_counter()
            for mask, weight in tensors.values():
                sift_graph.layer_metrics(mask, weight)
            base = time.perf_counter() - t0
        del tensors

        out = root / "analysis"
        t0 = time.perf_counter()
        cold = sift_graph.run_analysis([run], out=out, figures=False)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = sift_graph.run_analysis([run], out=out, figures=False, progress=False)
        t_warm = time.perf_counter() - t0
        assert cold.computed == args.snapshots and warm.computed == 0 and not cold.problems

        n = args.snapshots
        rows = [("baseline: layer_metrics on 1 snapshot, in-process, 1 thread", base, 1, base),
                ("decode 1 snapshot, npz -> masks + weights (I/O part of analyze)", t_decode, 1,
                 t_decode),
                (f"analyze --jobs {os.cpu_count()} (cold cache)", t_cold, n, t_cold / n),
                ("analyze again (warm cache, nothing computed)", t_warm, n, t_warm / n)]
        print(f"\n{'what':<60} {'wall s':>8} {'snaps':>6} {'s/snapshot':>11} {'snap/s':>8} {'vs base':>8}")
        for what, wall, count, per in rows:
            print(f"{what:<60} {wall:8.2f} {count:6d} {per:11.3f} {1 / per:8.3f} {base / per:8.2f}x")
        print(f"\ngoal <= 10 s/snapshot on 2 cores: {'met' if t_cold / n <= 10 else 'NOT met'} "
              f"({t_cold / n:.2f} s/snapshot)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # guard required: analyze's workers re-import this module
    main()
