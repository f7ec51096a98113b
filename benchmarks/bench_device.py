"""Training throughput on the current device: masked vs unmasked steps, RigL update share, AMP, DDP.

    python benchmarks/bench_device.py [--device auto] [--model M] [--quick]

Every figure is a ratio to a baseline measured in the same run, with the trainer's own step
(:class:`sift_train.steps.StepRunner`: forward, backward, optimizer step with sift's mask hooks):

1. masked vs unmasked: steps/s of the model with sift masks (static) and of the same model without,
   interleaved trials, fastest trial's median step; overhead = t_masked / t_unmasked - 1 (goal <= 15 %);
2. RigL update share at ΔT = 100: the extra time of an update step (dense-gradient copy, drop/grow,
   re-masking) over the median ordinary masked step, as a share of 100 steps:
   extra / (100 · t_step + extra) (goal <= 5 %);
3. AMP: masked steps/s with ``--amp bf16`` (and ``fp16`` on CUDA) vs ``off``;
4. DDP on CPU: steps/s of 2 Gloo processes vs 1 process at the same global batch (each process gets
   half the threads), skipped with ``--no-ddp``.

Defaults: ResNet-18 CIFAR-100 (3x32x32, batch 128) on CUDA, the small CNN on 8x8 inputs (batch 128)
on CPU. Prints the CPU model, torch version, threads and GPU name.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time

import torch
from _common import cpu_model  # benchmarks/ is on sys.path when run as a script
import torch.multiprocessing as mp

from sift_train.devices import place, resolve_device
from sift_train.distributed import Dist, shutdown, wrap
from sift_train.counts import active_count
from sift_train.masking import random_masks
from sift_train.methods import get_method
from sift_train.models import build_model
from sift_train.precision import Precision
from sift_train.schedule import UpdateSchedule
from sift_train.sparse_params import sparse_parameters
from sift_train.sparse_training import SparseTraining
from sift_train.steps import StepRunner

SHAPES = {"resnet18": ((3, 32, 32), 100), "cnn": ((1, 8, 8), 10), "mlp": ((1, 8, 8), 10)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make(args, device, masked: bool, method="static", interval=10**9, amp="off", dist=Dist()):
    """(runner, sparse, x, y): the model on ``device``, SGD-Nesterov, optional sift masks."""
    torch.manual_seed(0)
    in_shape, classes = SHAPES[args.model]
    model = place(build_model(args.model, in_shape=in_shape, num_classes=classes, family=args.family,
                              sparsity=args.sparsity), device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sparse = None
    if masked:
        shapes = {n: tuple(p.shape) for n, p in sparse_parameters(model).items()}
        gen = torch.Generator(device).manual_seed(0)
        s = {n: args.sparsity for n in shapes}
        targets = {n: active_count(torch.Size(sh).numel(), args.sparsity) for n, sh in shapes.items()}
        sparse = SparseTraining.from_parts(model, opt, random_masks(shapes, s, gen), targets, get_method(method),
                                           UpdateSchedule(end=10**9, interval=interval), gen)
    fmt = torch.channels_last if device.type == "cuda" and len(in_shape) == 3 else torch.contiguous_format
    x = torch.randn(args.batch, *in_shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (args.batch,), device=device)
    runner = StepRunner(wrap(dist, model, device), opt, Precision(amp, device), dist)
    return runner, sparse, x, y


def time_steps(runner, x, y, steps, device) -> list[float]:
    out = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        runner.step(x, y, len(y) * runner.dist.world_size)
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def compare(args, device, configs: dict[str, dict]) -> dict[str, float]:
    """Seconds per step of each configuration: interleaved trials, fastest trial's median."""
    built = {k: make(args, device, **kw) for k, kw in configs.items()}
    for runner, _, x, y in built.values():
        time_steps(runner, x, y, args.warmup, device)
    per = {k: [] for k in built}
    for _ in range(args.trials):
        for k, (runner, _, x, y) in built.items():
            per[k].append(statistics.median(time_steps(runner, x, y, args.steps // args.trials, device)))
    return {k: min(v) for k, v in per.items()}


def rigl_share(args, device, amp="off") -> tuple[float, float]:
    """(update extra in ms, share of 100 steps) from ``args.updates`` RigL updates at ΔT = 10."""
    runner, sparse, x, y = make(args, device, True, method="rigl", interval=10, amp=amp)
    time_steps(runner, x, y, 5, device)
    sparse.step = 0
    times = time_steps(runner, x, y, 10 * args.updates, device)
    upd = [times[t - 1] for t in range(10, 10 * args.updates + 1, 10)]
    ordinary = statistics.median(t for i, t in enumerate(times, 1) if i % 10)
    extra = max(0.0, statistics.mean(upd) - ordinary)
    return 1e3 * extra, extra / (100 * ordinary + extra)


def _ddp_worker(rank, world, port, args, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, args.threads // world))
    import torch.distributed as dist

    dist.init_process_group("gloo")
    args.batch //= world  # each process takes its share of the global batch
    runner, _, x, y = make(args, torch.device("cpu"), True, dist=Dist(rank, world, rank))
    time_steps(runner, x, y, args.warmup, torch.device("cpu"))
    per = [statistics.median(time_steps(runner, x, y, args.steps // args.trials, torch.device("cpu")))
           for _ in range(args.trials)]
    if rank == 0:
        with open(out, "w") as f:
            json.dump(min(per), f)
    shutdown()  # barrier, then leave the group


def ddp_cpu(args) -> float:
    """Seconds per step of 2-process Gloo DDP at the same global batch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.json")
        mp.spawn(_ddp_worker, args=(2, port, args, out), nprocs=2, join=True)
        with open(out) as f:
            return json.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", choices=sorted(SHAPES), help="default resnet18 on CUDA, cnn on CPU")
    ap.add_argument("--family", default="wide")
    ap.add_argument("--sparsity", type=float, default=0.75)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per configuration")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--updates", type=int, default=5, help="RigL updates timed")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-ddp", action="store_true")
    ap.add_argument("--quick", action="store_true", help="few steps: checks that it runs, noisy numbers")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.trials, args.updates = 10, 2, 2
    args.warmup = 3 if args.quick else 10
    device = resolve_device(args.device)
    args.model = args.model or ("resnet18" if device.type == "cuda" else "cnn")
    torch.set_num_threads(args.threads)
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"CPU {cpu_model()}, {args.threads} thread(s), torch {torch.__version__}, device {device}{gpu}")
    print(f"model {args.model} {args.family} s={args.sparsity}, batch {args.batch}, "
          f"{args.steps} timed steps x configuration\n")

    amps = ["off", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    configs = {"unmasked": dict(masked=False), **{f"masked amp={a}": dict(masked=True, amp=a) for a in amps}}
    t = compare(args, device, configs)
    base = t["unmasked"]
    print(f"{'configuration':<22}{'steps/s':>10}{'vs unmasked':>13}")
    for k, v in t.items():
        print(f"{k:<22}{1 / v:>10.1f}{base / v:>12.2f}x")
    overhead = t["masked amp=off"] / base - 1
    print(f"\nmasked-training overhead (fp32): {100 * overhead:.1f} %  (goal <= 15 %)")
    for a in amps[1:]:
        print(f"AMP {a} vs off (masked): {t['masked amp=off'] / t[f'masked amp={a}']:.2f}x steps/s")
    ms, share = rigl_share(args, device)
    print(f"RigL update: +{ms:.2f} ms per update, share at ΔT = 100: {100 * share:.2f} %  (goal <= 5 %)")
    if not args.no_ddp:
        cpu_args = argparse.Namespace(**{**vars(args), "model": args.model if device.type == "cpu" else "cnn"})
        single = compare(cpu_args, torch.device("cpu"), {"1": dict(masked=True)})["1"]
        two = ddp_cpu(cpu_args)
        print(f"DDP on CPU ({cpu_args.model}, global batch {args.batch}): 1 process {1 / single:.1f} "
              f"steps/s, 2 processes (Gloo) {1 / two:.1f} steps/s, speed-up {single / two:.2f}x")


if __name__ == "__main__":
    main()
