"""``python -m sift_train describe``: per-layer parameter/FLOP table of a Sparse-IFT model vs its dense model."""
from __future__ import annotations

import argparse
import json

from .accounting import count_layers, totals, trace
from .datasets import DATASETS, dataset_info
from .isoflop import plan_from_shapes
from .models import MODELS, build_model
from .sparse_params import sparse_parameters
from .widths import FAMILIES, VARIANTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="per-layer parameters and FLOPs of a model vs its dense model",
                       description=__doc__)
    p.add_argument("--model", default="resnet18", choices=MODELS)
    p.add_argument("--dataset", default="cifar100", choices=sorted(DATASETS))
    p.add_argument("--family", default="dense", choices=FAMILIES)
    p.add_argument("--sparsity", type=float, default=0.0, help="nominal sparsity s in [0, 1)")
    p.add_argument("--variant", default="paper", choices=VARIANTS)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=run)


def describe(model_name: str, dataset: str, family: str, sparsity: float, variant: str) -> dict:
    """Everything ``describe`` prints, as one JSON-ready dict (models built on the ``meta`` device)."""
    info = dataset_info(dataset)
    kw = {"in_shape": info.in_shape, "num_classes": info.num_classes, "variant": variant,
          "device": "meta"}
    model = build_model(model_name, family=family, sparsity=sparsity, **kw)
    dense = build_model(model_name, family="dense", sparsity=0.0, **kw)
    shapes, dense_shapes = trace(model, info.in_shape), trace(dense, info.in_shape)
    plan = plan_from_shapes(shapes, dense_shapes, family=family, sparsity=sparsity, variant=variant)
    rows = count_layers(shapes, plan.active)
    counts = totals(model, rows)
    dense_counts = totals(dense, count_layers(dense_shapes))
    numel = {name: p.numel() for name, p in sparse_parameters(model).items()}
    return {
        "model": model_name, "dataset": dataset, "family": family, "sparsity": sparsity,
        "variant": variant,
        "total_params": counts.total_params, "sparse_params": counts.sparse_params,
        "active_params": counts.active_params, "flops": counts.flops,
        "profiler_flops": counts.profiler_flops,
        "dense_params": dense_counts.total_params, "dense_flops": dense_counts.flops,
        "dense_profiler_flops": dense_counts.profiler_flops,
        "mask_sparsity": plan.mask_sparsity, "iso_flop_searched": plan.searched,
        "tensor_sparsity": {n: 1 - plan.active[n] / numel[n] for n in numel},
        "layers": [
            {"name": r.name, "kind": r.kind, "sparse": r.sparse, "params": r.params,
             "active_params": r.active_params, "flops": r.flops, "profiler_flops": r.profiler_flops}
            for r in rows
        ],
    }


def _table(d: dict) -> str:
    head = f"{'layer':<34} {'kind':<9} {'sparse':>6} {'params':>11} {'active':>11} {'FLOPs':>14} {'profiler':>14}"
    lines = [head, "-" * len(head)]
    for r in d["layers"]:
        lines.append(f"{r['name']:<34} {r['kind']:<9} {'yes' if r['sparse'] else '':>6} {r['params']:>11,} "
                     f"{r['active_params']:>11,} {r['flops']:>14,} {r['profiler_flops']:>14,}")
    lines.append("-" * len(head))
    ratio = d["flops"] / d["dense_flops"]
    lines += [
        f"{d['model']} on {d['dataset']}: family={d['family']} s={d['sparsity']} variant={d['variant']}",
        f"mask sparsity      {d['mask_sparsity']:.6f}"
        + (" (Iso-FLOP search)" if d["iso_flop_searched"] else " (nominal)"),
        f"total params       {d['total_params']:>15,}   dense {d['dense_params']:>15,}",
        f"sparse params      {d['sparse_params']:>15,}",
        f"active params      {d['active_params']:>15,}   / dense {d['active_params'] / d['dense_params']:.4f}",
        f"FLOPs (2xMAC)      {d['flops']:>15,}   dense {d['dense_flops']:>15,}   ratio {ratio:.6f}",
        f"profiler FLOPs     {d['profiler_flops']:>15,}   dense {d['dense_profiler_flops']:>15,}   "
        f"ratio {d['profiler_flops'] / d['dense_profiler_flops']:.6f}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    d = describe(args.model, args.dataset, args.family, args.sparsity, args.variant)
    print(json.dumps(d, indent=1) if args.json else _table(d))
    return 0
