"""Grids of training runs (families x sparsities x methods), one run folder each, restartable:
finished runs (``done.json``) are skipped and interrupted ones resumed from their checkpoint."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig, make_config
from .datasets import DATASETS

# the project default: MNIST-1D once it is registered, the bundled digits until then
DEFAULT_DATASET = "mnist1d" if "mnist1d" in DATASETS else "digits"
from .outdir import prepare_folder
from .rundir import RunDir
from .runstart import plan_start


@dataclass(frozen=True)
class SweepPreset:
    families: tuple[str, ...]
    sparsities: tuple[float, ...]
    methods: tuple[str, ...]
    base: dict  # make_config overrides shared by every run (preset, dataset, epochs, ...)
    dense_baseline: bool = True  # one extra dense run (sparsity 0)


SWEEPS: dict[str, SweepPreset] = {
    # digits, small CNN: 10 epochs x 23 steps; ΔT = 10 -> 17 mask updates per dynamic run (end at
    # 75 % = step 172), 28 snapshots per run. 37 runs; a few minutes on 2 CPU cores (docs/training.md).
    "demo": SweepPreset(
        families=("wide", "parallel", "factorized", "doped"),
        sparsities=(0.5, 0.75, 0.9),
        methods=("static", "set", "rigl"),
        base=dict(preset="digits", dataset="digits", model="cnn", epochs=10, update_interval=10,
                  milestones=(6, 9), seed=0),
    ),
    # Sparse-IFT Table 2 (sparse-ift.md §7): Sparse Wide trained by every method of the table, MLP on
    # the default dataset. GraNet starts at density 0.5 (GraNet's CIFAR script) and prunes during the
    # first 25 % of steps, so its Iso-FLOP search (methods.md §2.6) is feasible at s = 0.9 too.
    "table2": SweepPreset(
        families=("wide",),
        sparsities=(0.5, 0.75, 0.9),
        methods=("static", "snip", "grasp", "force", "set", "rigl", "granet"),
        base=dict(dataset=DEFAULT_DATASET, model="mlp", epochs=10, update_interval=10, milestones=(6, 9),
                  init_density=0.5, prune_end_fraction=0.25, seed=0),
    ),
}


def run_name(cfg: TrainConfig) -> str:
    """Descriptive folder name, e.g. ``cnn-wide-s0.75-rigl-seed0`` (``cnn-dense-seed0`` for dense)."""
    if cfg.sparsity == 0.0:
        return f"{cfg.model}-dense-seed{cfg.seed}"
    return f"{cfg.model}-{cfg.family}-s{cfg.sparsity:g}-{cfg.method}-seed{cfg.seed}"


def sweep_configs(preset: str) -> list[TrainConfig]:
    try:
        sp = SWEEPS[preset]
    except KeyError:
        raise ValueError(f"unknown sweep preset {preset!r}; expected one of {sorted(SWEEPS)}") from None
    base = dict(sp.base)
    name = base.pop("preset", None)
    cfgs = [make_config(name, family="dense", sparsity=0.0, method="static", **base)] if sp.dense_baseline else []
    cfgs += [make_config(name, family=f, sparsity=s, method=m, **base)
             for f in sp.families for s in sp.sparsities for m in sp.methods]
    return cfgs


def _one(args) -> tuple[str, str, float | None, float]:
    cfg, out, device, progress = args
    import torch

    from .rundir import RunDir
    from .train import train

    torch.set_num_threads(1)
    run = RunDir(out)
    status = "resumed" if run.has_checkpoint else "trained"
    t = time.perf_counter()
    info = train(cfg, out, resume=True, device=device, progress=progress)
    return run.path.name, status, info["test_acc"], time.perf_counter() - t


def _exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Pool initializer: a daemon thread ends this worker as soon as its parent, the sweep process, is
    gone (``kill -9`` included; POSIX, where an orphan's ``getppid()`` changes). The run it was training
    keeps its last checkpoint; its lock is then stale and the next sweep takes it over."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="sift-exit-with-parent", daemon=True).start()


def worker_pool(processes: int):
    """Spawned worker processes that die with this process."""
    return mp.get_context("spawn").Pool(processes, initializer=_exit_with_parent, initargs=(os.getpid(),))


def run_sweep(preset: str, out: str | Path, *, device: str = "cpu", jobs: int = 0,
              progress: bool = True) -> list[tuple[str, str, float | None, float]]:
    """Train every run of ``preset`` into ``out/<run_name>``; ``jobs`` parallel processes
    (0: one per CPU core, at most 4). Prints one line per run; returns those lines' fields."""
    out = prepare_folder(out)
    cfgs = sweep_configs(preset)
    jobs = jobs or min(os.cpu_count() or 1, 4)
    tasks = [(cfg, str(out / run_name(cfg)), device, progress and jobs == 1) for cfg in cfgs]
    results = []
    t0 = time.perf_counter()

    def report(i: int, r: tuple) -> None:
        name, status, acc, secs = r
        acc_s = "" if acc is None else f"  test acc {acc:.4f}"
        print(f"[{i:>3}/{len(tasks)}] {name:<40} {status:<16}{acc_s}  {secs:6.1f} s", file=sys.stderr)
        results.append(r)

    pending = []
    for task in tasks:
        if plan_start(RunDir(task[1]), task[0], resume=True) == "done":  # refuses another config's run
            report(len(results) + 1, (Path(task[1]).name, "skipped (done)", None, 0.0))
        else:
            pending.append(task)
    if jobs == 1 or device != "cpu" or len(pending) <= 1:
        for task in pending:
            report(len(results) + 1, _one(task))
    else:
        pool = worker_pool(min(jobs, len(pending)))
        try:
            for r in pool.imap_unordered(_one, pending):
                report(len(results) + 1, r)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    print(f"sweep {preset!r}: {len(tasks)} runs in {out} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return results
