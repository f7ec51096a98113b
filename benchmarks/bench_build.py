"""Time and peak memory of building the largest model, Sparse Wide ResNet-18 at 90 % (111 M parameters).

Each measurement runs in a fresh process (one thread): wall time of the build and the peak resident
memory above the process's memory after ``import torch``. Baseline, measured in the same run: allocating
one flat float32 tensor with as many entries as the model has parameters and drawing it from a normal
distribution once -- the least any builder can do. Issue 3 asks for "a few seconds" and "~2x its
parameter memory" at most.

    python benchmarks/bench_build.py [--family wide] [--sparsity 0.9] [--variant official]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import cpu_model  # benchmarks/ is on sys.path when run as a script

CHILD = r"""
import json, os, resource, sys, time
import torch
torch.set_num_threads(1)
def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
base = rss_kb()
what, family, s, variant = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
from sift_train.models import resnet18_cifar
n = sum(p.numel() for p in resnet18_cifar(100, family, s, variant, device="meta").parameters())
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = max(base, rss_kb())
t = time.perf_counter()
if what == "sift":
    model = resnet18_cifar(100, family, s, variant)
else:
    flat = torch.empty(n).normal_()
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_mb": (peak - base) / 1024, "params": n}))
"""


def measure(what: str, args) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, what, args.family, str(args.sparsity), args.variant],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="wide")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--variant", default="official")
    args = parser.parse_args()
    base, sift = measure("baseline", args), measure("sift", args)
    param_mb = base["params"] * 4 / 2**20
    print(f"CPU {cpu_model()}; {args.family} s={args.sparsity} {args.variant}: {base['params']:,} parameters "
          f"= {param_mb:.0f} MB")
    print(f"{'build':<34} {'seconds':>8} {'peak MB':>8} {'x param MB':>11}")
    for name, r in [("baseline: flat tensor + normal_", base), ("sift resnet18_cifar", sift)]:
        print(f"{name:<34} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} {r['peak_mb'] / param_mb:>11.2f}")
    print(f"ratio sift / baseline: time {sift['seconds'] / base['seconds']:.2f}x, "
          f"memory {sift['peak_mb'] / max(base['peak_mb'], 1):.2f}x")


if __name__ == "__main__":
    main()
