"""Masked-training overhead and RigL update cost on CPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py [--steps 150] [--threads 1]

For each model: steps/s of the same model trained unmasked (plain SGD, the baseline) and masked
(sift masks, static method: forward pre-hook, gradient and optimizer-state masking), their ratio;
then a RigL run at ΔT = 100 with every step timed: the extra time of the update steps (dense-gradient
copy, drop/grow, re-masking) over the median ordinary step, as a share of all training time.
Goals (issue 4): masked overhead <= 15 %, RigL updates <= 5 % of training time.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from _common import cpu_model  # benchmarks/ is on sys.path when run as a script

from sift_train.counts import active_count
from sift_train.masking import random_masks
from sift_train.methods import get_method
from sift_train.models import build_model
from sift_train.schedule import UpdateSchedule
from sift_train.sparse_params import sparse_parameters
from sift_train.sparse_training import SparseTraining


def _setup(name, in_shape, family, sparsity, masked, method="static", interval=100, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, in_shape=in_shape, num_classes=10, family=family, sparsity=sparsity)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sparse = None
    if masked:
        shapes = {n: tuple(p.shape) for n, p in sparse_parameters(model).items()}
        s = {n: sparsity for n in shapes}
        gen = torch.Generator().manual_seed(seed)
        targets = {n: active_count(torch.Size(sh).numel(), sparsity) for n, sh in shapes.items()}
        sparse = SparseTraining.from_parts(model, opt, random_masks(shapes, s, gen), targets, get_method(method),
                                           UpdateSchedule(end=10**9, interval=interval), gen)
    return model, opt, sparse


def _step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _time_steps(model, opt, x, y, steps) -> list[float]:
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        _step(model, opt, x, y)
        out.append(time.perf_counter() - t)
    return out


def bench(name, in_shape, family, sparsity, batch, steps, trials=5):
    x = torch.randn(batch, *in_shape)
    y = torch.randint(0, 10, (batch,))
    runs = {False: _setup(name, in_shape, family, sparsity, False),
            True: _setup(name, in_shape, family, sparsity, True)}
    for model, opt, _ in runs.values():
        _time_steps(model, opt, x, y, 5)  # warm-up
    per = {False: [], True: []}
    for _ in range(trials):  # interleaved trials; the fastest trial's median step (robust to load)
        for masked, (model, opt, _) in runs.items():
            per[masked].append(statistics.median(_time_steps(model, opt, x, y, max(3, steps // trials))))
    dense_s, masked_s = min(per[False]), min(per[True])

    model, opt, sparse = _setup(name, in_shape, family, sparsity, True, method="rigl", interval=100)
    _time_steps(model, opt, x, y, 5)
    sparse.step = 0  # count from here: updates at t = 100, 200, 300
    times = _time_steps(model, opt, x, y, 300)
    upd = [times[t - 1] for t in (100, 200, 300)]
    ordinary = statistics.median(t for i, t in enumerate(times, 1) if i % 100)
    extra = sum(u - ordinary for u in upd)
    share = extra / sum(times)
    n_sparse = sum(p.numel() for p in sparse_parameters(model).values())
    return dict(model=f"{name}-{family}-s{sparsity} b{batch}", sparse=n_sparse, dense=1 / dense_s,
                masked=1 / masked_s, overhead=masked_s / dense_s - 1, update_ms=1e3 * extra / len(upd),
                share=share)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150, help="timed steps per model and mode")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [("mlp", (1, 8, 8), "wide", 0.75, 128), ("cnn", (1, 8, 8), "wide", 0.75, 128),
             ("cnn", (1, 8, 8), "parallel", 0.9, 128), ("cnn", (3, 32, 32), "factorized", 0.75, 64)]
    print(f"CPU {cpu_model()}, torch {torch.__version__}, {args.threads} thread(s), {args.steps} timed steps per mode")
    head = (f"{'model':<34}{'sparse w':>10}{'unmasked st/s':>15}{'masked st/s':>13}{'overhead':>10}"
            f"{'RigL upd ms':>13}{'upd share ΔT=100':>18}")
    print(head)
    print("-" * len(head))
    for case in cases:
        r = bench(*case, steps=args.steps)
        print(f"{r['model']:<34}{r['sparse']:>10}{r['dense']:>15.1f}{r['masked']:>13.1f}"
              f"{100 * r['overhead']:>9.1f}%{r['update_ms']:>13.2f}{100 * r['share']:>17.2f}%")
    print("goals: overhead <= 15 %, update share <= 5 %")


if __name__ == "__main__":
    main()
