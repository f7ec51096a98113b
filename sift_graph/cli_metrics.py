"""``python -m sift_graph metrics CHECKPOINT``: Ramanujan metrics of the sparse layers of one checkpoint
(a thin layer over :func:`sift_graph.checkpoints.read_layers` and :func:`sift_graph.model_metrics`)."""
from __future__ import annotations

import sys

from .analysis.options import UsageError
from .checkpoints import load_checkpoint, read_layers
from .files import atomic_write_text
from .layer import CONVENTIONS
from .model import model_metrics

HELP = "metrics of every sparse layer of a checkpoint (.pt state dict or .safetensors)"
SHOWN = ("layer", "shape", "density", "delta_r", "delta_r_imdb", "lambda", "lambda_imsg", "reason")


def add_parser(sub, parents) -> None:
    """Register ``metrics`` on the subcommand parsers ``sub``."""
    p = sub.add_parser("metrics", help=HELP, description=HELP + " (docs/byom.md).", parents=parents)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="state dict file (.pt/.pth/.bin or .safetensors)")
    p.add_argument("--transposed", nargs="+", default=[], metavar="PATTERN",
                   help="modules stored (in, out), e.g. '*.c_attn' (Hugging Face GPT-2 Conv1D)")
    p.add_argument("--standard", nargs="+", default=[], metavar="PATTERN",
                   help="modules in PyTorch (out, in) layout although their name or bias suggests otherwise")
    p.add_argument("--convention", default="hoang2023a", choices=CONVENTIONS,
                   help="metric convention (specs/metrics.md §9.1)")
    p.add_argument("--out", metavar="CSV", help="write every column to this CSV file")
    p.set_defaults(run=run)


def run(args) -> int:
    """Print the main columns (or write ``--out``); one ``skipped:`` line per layer left out."""
    try:
        state, sparsifier = load_checkpoint(args.checkpoint)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    found = read_layers(state, masks=sparsifier, transposed=args.transposed, standard=args.standard)
    for name, reason in found.skipped.items():
        print(f"skipped: {args.checkpoint}: layer {name}: {reason}", file=sys.stderr)
    if not found.layers:
        print(f"{args.checkpoint}: no sparse layer found", file=sys.stderr)
        return 1
    df = model_metrics(found.layers, convention=args.convention)
    if args.out:
        atomic_write_text(args.out, df.to_csv(index=False))
        print(f"{len(df)} layers -> {args.out}")
    else:
        print(df[[c for c in SHOWN if c in df]].to_string(index=False))
    return 1 if found.skipped else 0
