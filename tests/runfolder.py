"""Write tiny run folders in the documented format (docs/run-format.md) with numpy + json only.

Independent of sift_train on purpose: the reader is tested against the format document.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_SHAPES = {"conv1.weight": (8, 3, 3, 3), "conv2.weight": (12, 8, 3, 3), "fc.weight": (10, 12)}


def random_tensors(shapes, density, seed):
    """``{name: (mask, weight)}`` with exactly ``round(density*numel)`` active positions per tensor."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        numel = int(np.prod(shape))
        flat = np.zeros(numel, dtype=bool)
        flat[rng.choice(numel, size=max(1, round(density * numel)), replace=False)] = True
        mask = flat.reshape(shape)
        weight = np.where(mask, rng.standard_normal(shape), 0).astype(np.float32)
        weight[mask & (weight == 0)] = 0.5
        out[name] = (mask, weight)
    return out


def write_snapshot(run: Path, step: int, tensors, *, epoch=None, test_acc=0.5, reason="every", dense=None):
    """Write ``snapshots/step_XXXXXXXX.npz`` exactly as run-format.md documents it; ``dense``:
    ``{name: weight}`` stored as dense weights (``shape`` and every value, listed in ``dense_tensors``)."""
    arrays = {}
    for name, (mask, weight) in tensors.items():
        arrays[f"{name}/shape"] = np.asarray(mask.shape, dtype=np.int64)
        arrays[f"{name}/mask"] = np.packbits(mask.reshape(-1), bitorder="big")
        arrays[f"{name}/values"] = weight[mask].astype(np.float32)
    for name, weight in (dense or {}).items():
        arrays[f"{name}/shape"] = np.asarray(weight.shape, dtype=np.int64)
        arrays[f"{name}/values"] = weight.astype(np.float32).reshape(-1)
    meta = {"step": step, "epoch": float(step / 10 if epoch is None else epoch),
            "test_acc": test_acc, "reason": reason, "tensors": list(tensors)}
    if dense is not None:
        meta["dense_tensors"] = list(dense)
    arrays["meta"] = np.array(json.dumps(meta))
    path = run / "snapshots" / f"step_{step:08d}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_run(root: Path, name: str, *, steps=(0, 10, 20), shapes=TINY_SHAPES, family="wide",
              method="rigl", sparsity=0.5, seed=0, accs=None) -> Path:
    """A complete run folder: config.json, metrics.csv and one snapshot per step."""
    run = Path(root) / name
    run.mkdir(parents=True)
    config = {"model": "cnn", "dataset": "digits", "family": family, "sparsity": sparsity,
              "variant": "paper", "method": method, "epochs": 2, "seed": seed}
    meta = {"format": "sift-run", "format_version": 1, "config": config,
            "mask_sparsity": {n: sparsity for n in shapes},
            "sparse_tensors": {n: {"shape": list(s)} for n, s in shapes.items()},
            "versions": {"sift": "0.1.0"}, "created": "2026-11-22T03:00:00+00:00"}
    (run / "config.json").write_text(json.dumps(meta))
    accs = accs if accs is not None else [0.3 + 0.1 * i for i in range(len(steps))]
    rows = ["step,epoch,train_loss,train_acc,test_loss,test_acc,lr,flops"]
    for i, step in enumerate(steps):
        write_snapshot(run, step, random_tensors(shapes, 1 - sparsity, seed * 1000 + i),
                       test_acc=accs[i])
        rows.append(f"{step},{step / 10},1.0,0.5,1.0,{accs[i]},0.1,1000")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run
