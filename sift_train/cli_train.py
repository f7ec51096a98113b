"""``python -m sift_train train ...`` and ``python -m sift_train sweep ...`` (thin layer over
:func:`sift_train.train.train` and :func:`sift_train.sweep.run_sweep`)."""
from __future__ import annotations

import argparse
import os
from dataclasses import fields

from .config import LR_SCHEDULES, PRESETS, TrainConfig, make_config
from .datasets import DATASETS
from .devices import DEVICE_HELP
from .distributions import DISTRIBUTIONS
from .method_options import add_method_flags
from .precision import AMP_MODES
from .methods import METHODS
from .models import MODELS
from .schedule import ANNEALS
from .widths import FAMILIES, VARIANTS


def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 60,120,160, got {text!r}")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def register(sub) -> None:
    p = sub.add_parser("train", help="train one model into a run folder",
                       description="Train one (Sparse-IFT) model with a sparse training method "
                                   "and write a run folder (docs/run-format.md). Unset options come "
                                   "from --preset (default: 'cifar' for CIFAR, 'digits' otherwise).")
    p.add_argument("--out", required=True, help="run folder to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    p.add_argument("--config", metavar="FILE.toml",
                   help="train options from a recipe/sweep TOML file or a shipped preset name "
                        "(paper-cifar100-resnet18, imagenet-style); flags override it")
    p.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default auto)")
    p.add_argument("--prefetch", type=int, metavar="N",
                   help="batches prepared ahead in a background thread (default 2 on CUDA, 0 on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("model and data")
    g.add_argument("--preset", choices=sorted(PRESETS))
    g.add_argument("--model", choices=MODELS)
    g.add_argument("--dataset", choices=sorted(DATASETS))
    g.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ or cifar-100-python/")
    g.add_argument("--family", choices=FAMILIES)
    g.add_argument("--sparsity", type=float, help="nominal sparsity s of the transformation")
    g.add_argument("--variant", choices=VARIANTS,
                   help="paper text or released-code behaviour (docs/training.md)")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("sparse training")
    g.add_argument("--method", choices=sorted(METHODS))
    g.add_argument("--distribution", choices=list(DISTRIBUTIONS))
    g.add_argument("--iso-flop", type=_bool, metavar="BOOL",
                   help="use the Iso-FLOP mask-sparsity search where available (default true)")
    g.add_argument("--update-interval", type=int, metavar="STEPS", help="ΔT between mask updates (100)")
    g.add_argument("--drop-fraction", type=float, metavar="ALPHA", help="initial drop fraction α0 (0.3)")
    g.add_argument("--anneal", choices=list(ANNEALS), help="drop-fraction decay (cosine)")
    g.add_argument("--end-fraction", type=float, help="stop mask updates at this fraction of steps (0.75)")
    add_method_flags(g)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=["sgd", "adam"])
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", type=_bool, metavar="BOOL")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--milestones", type=_milestones, metavar="E1,E2,...", help="LR decay epochs")
    g.add_argument("--lr-gamma", type=float, help="LR factor at each milestone (0.2)")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="step (milestones) or cosine (step)")
    g.add_argument("--warmup-epochs", type=float, metavar="E", help="linear LR warm-up epochs (0)")
    g.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps (0: all epochs)")
    g.add_argument("--accumulate", type=int, metavar="N",
                   help="micro-batches per optimizer step; --batch-size stays the global batch (1)")
    g.add_argument("--amp", choices=list(AMP_MODES), help="mixed precision: off, bf16 or fp16 (off)")
    g = p.add_argument_group("recording")
    g.add_argument("--snapshot-every", type=int, metavar="STEPS",
                   help="also snapshot every N steps (default 0: epoch ends and mask updates only)")
    g.add_argument("--snapshot-at", type=_milestones, metavar="S1,S2,...", help="also snapshot at these steps")
    g.add_argument("--snapshot-log", type=int, metavar="N", help="also snapshot at N log-spaced steps")
    g.add_argument("--snapshot-updates", type=_bool, metavar="BOOL",
                   help="snapshot just before every mask update (default true; the masks chosen by "
                        "every update are kept in masks/ either way)")
    g.add_argument("--snapshot-epochs", type=_bool, metavar="BOOL", help="snapshot at every epoch end (true)")
    g.add_argument("--eval-batch-size", type=int)
    p.set_defaults(func=_train)

    s = sub.add_parser("sweep", help="train a grid of runs from a TOML sweep file or a shipped preset",
                       description="Train every run of a sweep (a TOML grid of families x sparsities x "
                                   "methods x seeds x any train option; docs/training.md) into "
                                   "OUT/<run name>; finished runs with an equal config are skipped "
                                   "and interrupted ones resumed.")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--config", metavar="FILE", help="sweep TOML file")
    src.add_argument("--preset", help="shipped sweep preset (default 'default': MNIST-1D; 'demo': digits)")
    s.add_argument("--out", required=True, help="folder for the run folders")
    s.add_argument("--device", default="cpu")
    s.add_argument("--jobs", type=int, default=0,
                   help="runs trained in parallel processes (default 0: one per CPU core, at most 4)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_sweep)


# every TrainConfig field has a flag of the same name; --preset is passed on its own
_CONFIG_FLAGS = tuple(f.name for f in fields(TrainConfig) if f.name != "preset")


def _train(args) -> int:
    from .distributed import shutdown_after
    from .recipes import train_options
    from .train import train

    flags = {k: getattr(args, k) for k in _CONFIG_FLAGS if getattr(args, k) is not None}
    options = train_options(args.config, set(flags)) if args.config else {}
    cfg = make_config(args.preset or options.pop("preset", None), **{**options, **flags})
    with shutdown_after():
        info = train(cfg, args.out, resume=args.resume, device=args.device, progress=not args.no_progress,
                     prefetch=args.prefetch)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{args.out}: step {info['step']}, epoch {info['epoch']}, test accuracy {info['test_acc']:.4f}")
    return 0


def _sweep(args) -> int:
    from .sweep import load_sweep, run_sweep

    run_sweep(load_sweep(args.config, args.preset), args.out, device=args.device, jobs=args.jobs, progress=not args.no_progress)
    return 0
