"""Benchmark: ``sift_graph.layer_metrics`` against a reference-style baseline on realistic layers.

Run:  python benchmarks/bench_metrics.py [--skip-baseline-large] [--cases conv512,linear4608,conv1619]
                                        [--baselines reference,sparse-adj] [--repeat 5] [--baseline-repeat 3]
                                        [--rounds 1] [--device cpu]
Quick check of one layer against the reference-style baseline only:
      python benchmarks/bench_metrics.py --cases conv512 --baselines reference

Two baselines follow the reference algorithm of hoang2023a (``ScottHoang/dst-ram-pruning@73bb598
sparselearning/ramanujan.py``, spec ``../shared/specs/metrics.md`` §3.3-3.4, §4, §11): for the whole
layer and for every input-degree class they build the full bipartite adjacency ``[[0, B], [Bᵀ, 0]]``
of the non-isolated nodes, run float32 ``eigsh(k=3, which="LM")`` with scipy's random start vector and
take the 3rd largest |eigenvalue| as μ̂ — once for the mask and once for |W⊙M| — under hoang2023a's
degree rules and Cheeger factor. They differ in how the adjacency and the degrees are obtained:

* ``reference``: step by step as the reference code's ``ramanujan_bounds`` does it, in every call: a
  dense N×N float32 bigraph (``get_biparite_graph``; N = non-isolated inputs + outputs, 1 GB for the
  1619 conv), its edge list by torch's ``to_sparse().coalesce()`` for the degrees and the degree rule,
  then ``eigsh`` on ``coo_array`` of the dense matrix (metrics.md §11 lists these phases). Until
  2026-12-02 this baseline counted the degrees directly and skipped the ``to_sparse().coalesce()``
  pass (0.15-0.17 s of a 1.5-1.7 s call on conv512, ≈ 10 %), which made it faster than the reference code;
* ``sparse-adj``: a stronger baseline that counts the degrees directly and builds the same adjacency
  as a sparse matrix (no dense N×N, no degree pass).

Every (case, method) runs in its own subprocess, so its peak memory (``ru_maxrss``) is its own.
Printed: wall seconds, CPU seconds (all threads; steadier than wall time on a shared machine),
speed-up (baseline / sift wall time), |difference| per metric, peak RSS of the process and the part
of it added by the metric call (inputs already allocated before), the solver routes sift took
(:func:`sift_graph.spectral.record_routes`: ``gram-dense32``/``gram-dense64``/``gram-sparse``/
``lanczos`` (``arpack`` if it does not converge) for the whole layer, ``blocks`` for the batched
degree classes, ``svd`` for rank-deficient fallbacks) and
the CPU model. Each (case, method) is timed as the median of its calls (``--repeat`` for sift,
``--baseline-repeat`` for a baseline; with ``--rounds R`` the methods take turns R times, each turn in a
fresh process, and the median is over all R turns' calls) and the speed-up is the ratio of the medians: the baselines,
like the reference code, draw a random ARPACK start vector at every call (scipy's ``eigsh`` without
``v0``), so one call of the same baseline on the same layer takes 1.2-1.7 s on conv512 here. sift pins BLAS
itself (1 thread, all cores only for large dense Gram products); run on an otherwise idle machine
for clean numbers. torch is imported before timing in every method.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from _common import blas_kernels, cpu_model  # benchmarks/ is on sys.path when run as a script

# name: (PyTorch weight shape, density). Shapes from the issue; masks drawn with default_rng(2024)
# like metrics.md §11.
CASES = {
    "conv512": ((512, 512, 3, 3), 0.10),
    "linear4608": ((4608, 512), 0.50),
    "conv1619": ((1619, 1619, 3, 3), 0.10),
}
LARGE = ("linear4608", "conv1619")
METRICS = ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg")


def make_layer(name: str) -> tuple[np.ndarray, np.ndarray]:
    shape, density = CASES[name]
    rng = np.random.default_rng(2024)
    mask = rng.random(shape, dtype=np.float32) < density
    weight = rng.standard_normal(shape, dtype=np.float32)
    return mask, weight


# ---------------------------------------------------------------- reference-style baseline
def _sparse_adjacency(t: np.ndarray) -> sp.coo_matrix:
    """The (n_l+n_r)² float32 bipartite adjacency ``[[0, t], [tᵀ, 0]]``, built sparse (``sparse-adj``)."""
    b = sp.coo_matrix(t.astype(np.float32))
    return sp.bmat([[None, b], [b.T, None]], format="coo").astype(np.float32)


def _dense_bigraph(t: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``Ramanujan.get_biparite_graph`` and the degree pass of ``ramanujan_bounds`` (ramanujan.py,
    metrics.md §11): the dense (n_l+n_r)² float32 bigraph, then its edge list by torch's
    ``to_sparse().coalesce().indices()`` and the mean left and right degrees of that edge list
    (torch_geometric's ``degree`` is a count of the source nodes: ``bincount`` here)."""
    import torch

    n_l, n_r = t.shape
    dense = np.zeros((n_l + n_r, n_l + n_r), dtype=np.float32)
    dense[:n_l, n_l:] = t
    dense[n_l:, :n_l] = t.T
    edge_index = torch.from_numpy(dense).to_sparse().coalesce().indices()
    degree = torch.bincount(edge_index[0], minlength=n_l + n_r).double()
    return dense, float(degree[:n_l].mean()), float(degree[n_l:].mean())


def _bounds(t: np.ndarray, weighted: bool, dense_first: bool) -> float:
    """``Ramanujan.ramanujan_bounds`` on a (left × right) matrix: inf unless d_L ≥ 3 and d_R > 1.

    ``dense_first`` (``reference``) follows the reference step by step: the dense bigraph and its
    degree pass first (:func:`_dense_bigraph`), then ``eigsh`` on ``coo_array(dense)`` where the degree
    rule holds. Otherwise (``sparse-adj``) the degrees are counted first and the adjacency is built
    sparse, only where the rule holds."""
    t = t[(t != 0).any(axis=1)][:, (t != 0).any(axis=0)]
    n_l, n_r = t.shape
    if n_l == 0:
        return math.inf
    if dense_first:
        dense, d_l, d_r = _dense_bigraph(t)
    else:
        e = np.count_nonzero(t)
        d_l, d_r = e / n_l, e / n_r
    if not (d_l >= 3 and d_r > 1):
        return math.inf
    adj = sp.coo_matrix(dense) if dense_first else _sparse_adjacency(t)
    eigs = sorted(np.abs(eigsh(adj, k=3, which="LM", return_eigenvectors=False)), reverse=True)
    if weighted:
        return float(eigs[0] - eigs[-1])
    return math.sqrt(d_l - 1) + math.sqrt(d_r - 1) - float(eigs[-1])


def baseline_layer_metrics(mask: np.ndarray, weight: np.ndarray, dense_first: bool) -> dict:
    """hoang2023a ``full_graph_score`` + ``iterative_mean_score``, reference algorithm."""
    n_out = mask.shape[0]
    fm = mask.reshape(n_out, -1).T.astype(np.float32)  # n_in × n_out
    fw = np.abs(weight * mask).reshape(n_out, -1).T.astype(np.float32)
    out = {"delta_r": _bounds(fm.T, False, dense_first),  # left = outputs
           "lambda": _bounds(fw.T, True, dense_first)}
    deg = fm.sum(axis=1)
    terms, wterms = [], []
    for d, k in Counter(deg.tolist()).items():
        if d == 0 or k < 2:
            continue
        idx = deg == d
        sub, wsub = fm[idx], fw[idx]  # left = the k inputs
        bound = _bounds(sub, False, dense_first)
        wbound = _bounds(wsub, True, dense_first)
        o = int((sub.sum(axis=0) > 0).sum())
        cheeger = max(k, o) / (k + o - 1)
        if bound == math.inf:
            continue
        terms.append(cheeger * bound)
        wterms.append(cheeger * wbound)
    out["delta_r_imdb"] = sum(terms) / len(terms) if terms else 0.0
    out["lambda_imsg"] = sum(wterms) / len(wterms) if wterms else 0.0
    return out


# ---------------------------------------------------------------- one measurement per process
def worker(case: str, method: str, repeat: int, device: str) -> None:
    import torch  # noqa: F401  (loaded up front, as in any PyTorch session: its import is not timed)

    mask, weight = make_layer(case)
    routes: list[str] = []
    if method == "sift":
        import sift_graph
        from sift_graph.spectral import record_routes

        def fn():
            with record_routes() as taken:
                out = sift_graph.layer_metrics(mask, weight, device=device)
            routes[:] = taken
            return out
    else:
        dense_first = method == "reference"
        fn = lambda: baseline_layer_metrics(mask, weight, dense_first)  # noqa: E731
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"walls": walls, "cpus": cpus, "rss_mb": rss / 1024, "added_mb": (rss - rss_before) / 1024,
                      "metrics": {k: res[k] for k in METRICS},
                      "routes": ",".join(f"{r}×{n}" for r, n in Counter(routes).items())}))


def measure(case: str, method: str, repeat: int = 1, device: str = "cpu") -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", case, method, str(repeat), device],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{case}/{method} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def combine(runs: list[dict]) -> dict:
    """One method's measurements over the rounds: median, min and max of all its calls' wall seconds,
    median CPU seconds, the largest peak RSS; metrics and routes of the last round."""
    walls = [w for r in runs for w in r["walls"]]
    return {"seconds": float(np.median(walls)), "min": min(walls), "max": max(walls), "n": len(walls),
            "cpu": float(np.median([c for r in runs for c in r["cpus"]])),
            "rss_mb": max(r["rss_mb"] for r in runs), "added_mb": max(r["added_mb"] for r in runs),
            "metrics": runs[-1]["metrics"], "routes": runs[-1]["routes"]}


BASELINES = ("reference", "sparse-adj")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-baseline-large", action="store_true",
                   help=f"skip the (minutes-long) baselines on {', '.join(LARGE)}")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated subset of " + ", ".join(BASELINES))
    p.add_argument("--repeat", type=int, default=5, help="sift calls per case; the median counts (default 5)")
    p.add_argument("--baseline-repeat", type=int, default=3,
                   help="baseline calls per case (each draws a new random ARPACK start, as the reference code "
                        "does); the median counts (default 3)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate sift and the baselines this many times per case (each round: one process per "
                        "method with --repeat / --baseline-repeat calls); medians over all rounds' calls, so that "
                        "a slow phase of a shared machine falls on both sides (default 1)")
    p.add_argument("--device", default="cpu", help="layer_metrics device for sift (default cpu)")
    p.add_argument("--worker", nargs=4, metavar=("CASE", "METHOD", "REPEAT", "DEVICE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        case, method, repeat, device = args.worker
        return worker(case, method, int(repeat), device)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [c for c in cases if c not in CASES] + [b for b in baselines if b not in BASELINES]
    if unknown:
        raise SystemExit(f"unknown case(s)/baseline(s) {unknown}; choose from {list(CASES)} and {list(BASELINES)}")
    if min(args.rounds, args.repeat, args.baseline_repeat) < 1:
        raise SystemExit("--rounds, --repeat and --baseline-repeat must be at least 1")
    print(f"CPU: {cpu_model()}; BLAS: {blas_kernels()}; Python {platform.python_version()}")
    print("seconds = median of the calls (range in the table); speed-up = median baseline seconds / median sift "
          "seconds, measured in this run; |diff| = largest |sift - baseline|")
    print(f"{'case':12s} {'method':10s} {'seconds':>9s} {'cpu s':>8s} {'speed-up':>9s} {'peak MB':>8s} {'added MB':>9s}  "
          + "  ".join(f"{m:>12s}" for m in METRICS))
    summary = []
    for case in cases:
        methods = [m for m in baselines if not (args.skip_baseline_large and case in LARGE)]
        runs: dict[str, list[dict]] = {m: [] for m in ["sift", *methods]}
        for r in range(args.rounds):
            if args.rounds > 1:
                print(f"{case}: round {r + 1} of {args.rounds}", file=sys.stderr, flush=True)
            runs["sift"].append(measure(case, "sift", args.repeat, args.device))
            for method in methods:
                runs[method].append(measure(case, method, args.baseline_repeat))
        ours = combine(runs["sift"])
        print(f"{case:12s} {'sift':10s} {ours['seconds']:9.3f} {ours['cpu']:8.3f} {'':>9s} {ours['rss_mb']:8.0f} "
              f"{ours['added_mb']:9.0f}  " + "  ".join(f"{ours['metrics'][m]:12.6f}" for m in METRICS), flush=True)
        print(f"{case:12s} {'  routes':10s} {ours['routes']}", flush=True)
        for method in baselines:
            if args.skip_baseline_large and case in LARGE:
                print(f"{case:12s} {method:10s} {'skipped':>9s}")
                continue
            r = combine(runs[method])
            ratio = f"{r['seconds'] / ours['seconds']:8.1f}x"
            print(f"{case:12s} {method:10s} {r['seconds']:9.3f} {r['cpu']:8.3f} {ratio:>9s} {r['rss_mb']:8.0f} "
                  f"{r['added_mb']:9.0f}  " + "  ".join(f"{r['metrics'][m]:12.6f}" for m in METRICS))
            diffs = [abs(ours["metrics"][m] - r["metrics"][m]) for m in METRICS]
            print(f"{case:12s} {'  |diff|':10s} {'':9s} {'':8s} {'':9s} {'':8s} {'':9s}  "
                  + "  ".join(f"{d:12.2e}" for d in diffs), flush=True)
            summary.append((case, method, ours, r, max(diffs)))
    if summary:
        print("\n| layer | baseline | sift s (min-max of n) | baseline s (min-max of n) | speed-up | max abs diff "
              "| sift peak MB | sift routes |")
        print("|---|---|---|---|---|---|---|---|")
        for case, method, o, r, diff in summary:
            print(f"| {case} | {method} | {o['seconds']:.3f} ({o['min']:.3f}-{o['max']:.3f} of {o['n']}) "
                  f"| {r['seconds']:.2f} ({r['min']:.2f}-{r['max']:.2f} of {r['n']}) | {r['seconds'] / o['seconds']:.1f}x "
                  f"| {diff:.1e} | {o['rss_mb']:.0f} | {o['routes']} |")


if __name__ == "__main__":
    main()
