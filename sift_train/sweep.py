"""Grids of training runs from a TOML file, one run folder each, restartable.

A sweep file (``docs/training.md``; shipped presets in ``sift_train/presets/*.toml``)::

    dense_baseline = true        # one dense run (sparsity 0, static) per combination of the other keys
    [base]                       # TrainConfig overrides shared by every run ("preset" picks the recipe)
    preset = "mnist1d"
    epochs = 20
    [grid]                       # every key is a TrainConfig field, every value a list: the product
    family = ["wide", "factorized"]
    sparsity = [0.5, 0.9]
    method = ["static", "rigl"]
    seed = [0, 1, 2]

Run names encode every option that varies: ``{model}-{family}-s{sparsity}-{method}`` (``{model}-dense``
for the baseline), then ``-{field}{value}`` for each other grid field with several values, then
``-seed{seed}``. A finished run (``done.json``) is skipped only when its stored config equals the
requested one; an interrupted run is resumed (the resume refuses a different config).
"""
from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .config import TrainConfig, make_config
from .outdir import prepare_folder
from .recipes import _FIELDS, tomllib  # one TOML reader set-up for train --config and sweep
from .rundir import RunDir
from .runstart import plan_start

_NAMED = ("model", "family", "sparsity", "method", "seed")  # always in the name, in this order


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: shared overrides, grid lists, and whether to add dense baselines."""

    base: dict
    grid: dict[str, list]
    dense_baseline: bool = True
    source: str = ""
    varied: tuple[str, ...] = field(default=())

    def configs(self) -> list[TrainConfig]:
        """Every run's config: dense baselines first, then the grid in file order."""
        base = dict(self.base)
        preset = base.pop("preset", None)
        keys = list(self.grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]
        cfgs: list[TrainConfig] = []
        if self.dense_baseline:
            seen = set()
            for c in combos:
                rest = {k: v for k, v in c.items() if k not in ("family", "sparsity", "method")}
                key = json.dumps(rest, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    cfgs.append(self._make(preset, base, {**rest, "family": "dense", "sparsity": 0.0,
                                                          "method": "static"}))
        cfgs += [self._make(preset, base, c) for c in combos]
        return cfgs

    def _make(self, preset, base, values) -> TrainConfig:
        try:
            return make_config(preset, **{**base, **values})  # TrainConfig checks model, family, method
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.source or 'sweep'}: {exc}") from None


def parse_sweep(text: str, source: str = "sweep") -> Sweep:
    """Parse sweep TOML ``text`` (``source`` names it in errors); raises one-line ``ValueError``s."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML ({exc})") from None
    unknown = set(doc) - {"base", "grid", "dense_baseline", "description"}
    if unknown:
        raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}; expected base, grid, "
                         f"dense_baseline, description")
    base, grid = doc.get("base", {}), doc.get("grid", {})
    if not isinstance(base, dict) or not isinstance(grid, dict):
        raise ValueError(f"{source}: [base] and [grid] must be tables")
    for table, keys in (("base", base), ("grid", grid)):
        bad = sorted(k for k in keys if k not in _FIELDS)
        if bad:
            raise ValueError(f"{source}: [{table}] has unknown train options {bad}")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"{source}: [grid] {k} must be a non-empty list, got {v!r}")
        if len(set(map(repr, v))) != len(v):
            raise ValueError(f"{source}: [grid] {k} repeats a value: {v}")
    dense = doc.get("dense_baseline", True)
    if not isinstance(dense, bool):
        raise ValueError(f"{source}: dense_baseline must be true or false, got {dense!r}")
    varied = tuple(k for k, v in grid.items() if len(v) > 1)
    sweep = Sweep(dict(base), {k: list(v) for k, v in grid.items()}, dense, source, varied)
    sweep.configs()  # validate every value now, with the file's name in the message
    return sweep


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("sift_train.presets").iterdir()
                  if p.name.endswith(".toml"))


def load_sweep(config: str | Path | None = None, preset: str | None = None) -> Sweep:
    """The sweep of a TOML file ``config`` or of the shipped preset ``preset``."""
    if config is not None:
        path = Path(config)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the sweep file ({exc.strerror})") from None
        return parse_sweep(text, str(path))
    name = preset or "default"
    if name not in preset_names():
        raise ValueError(f"unknown sweep preset {name!r}; expected one of {preset_names()}")
    return parse_sweep(resources.files("sift_train.presets").joinpath(f"{name}.toml").read_text(),
                       f"preset {name}")


def run_name(cfg: TrainConfig, varied: tuple[str, ...] = ()) -> str:
    """Folder name, e.g. ``mlp-wide-s0.9-rigl-seed0`` (``mlp-dense-seed0`` for dense); every field in
    ``varied`` other than the always-named ones adds ``-{field}{value}`` before the seed."""
    head = (f"{cfg.model}-dense" if cfg.sparsity == 0.0
            else f"{cfg.model}-{cfg.family}-s{cfg.sparsity:g}-{cfg.method}")
    extra = "".join(f"-{k}{_short(getattr(cfg, k))}" for k in varied if k not in _NAMED)
    return f"{head}{extra}-seed{cfg.seed}"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return "_".join(_short(x) for x in v)
    return str(v)


def sweep_configs(sweep: Sweep) -> list[tuple[str, TrainConfig]]:
    """``(run name, config)`` of every run; raises if two runs would share a folder."""
    named = [(run_name(c, sweep.varied), c) for c in sweep.configs()]
    names = [n for n, _ in named]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{sweep.source}: runs share the folder names {dup[:3]}")
    return named


def stored_config_diff(run_dir: Path, cfg: TrainConfig) -> list[str]:
    """Fields where the run folder's stored config differs from ``cfg`` (``data_dir`` ignored)."""
    try:
        stored = json.loads((run_dir / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["config.json unreadable"]
    want = cfg.to_dict()
    return sorted(k for k in set(want) | set(stored)
                  if k != "data_dir" and stored.get(k) != want.get(k))


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


def run_sweep(sweep: Sweep | str, out: str | Path, *, device: str = "cpu", jobs: int = 0,
              progress: bool = True) -> list[tuple[str, str, float | None, float]]:
    """Train every run of ``sweep`` (a :class:`Sweep` or a preset name) into ``out/<run name>``;
    ``jobs`` parallel processes (0: one per CPU core, at most 4). A finished run whose stored config
    differs from the requested one is an error (nothing is trained). Prints one line per run."""
    if isinstance(sweep, str):
        sweep = load_sweep(preset=sweep)
    out = Path(out)
    named = sweep_configs(sweep)
    conflicts = []
    for name, cfg in named:
        if (out / name / "done.json").is_file():
            diff = stored_config_diff(out / name, cfg)
            if diff:
                conflicts.append(f"{out / name} ({', '.join(diff)})")
    if conflicts:
        raise ValueError(f"finished runs hold a different config than requested: "
                         f"{'; '.join(conflicts[:3])}{' ...' if len(conflicts) > 3 else ''}; "
                         f"use another --out or delete them")
    out = prepare_folder(out)
    jobs = jobs or min(os.cpu_count() or 1, 4)
    tasks = [(cfg, str(out / name), device, progress and jobs == 1) for name, cfg in named]
    results = []
    t0 = time.perf_counter()

    def report(i: int, r: tuple) -> None:
        name, status, acc, secs = r
        acc_s = "" if acc is None else f"  test acc {acc:.4f}"
        print(f"[{i:>3}/{len(tasks)}] {name:<44} {status:<16}{acc_s}  {secs:6.1f} s", file=sys.stderr)
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
    print(f"sweep {sweep.source}: {len(tasks)} runs in {out} ({time.perf_counter() - t0:.0f} s)",
          file=sys.stderr)
    return results
