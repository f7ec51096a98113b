"""Validation of the method-specific ``TrainConfig`` fields (one-line errors naming the option)."""
from __future__ import annotations

from .methods.nm import parse_pattern

NM_SOLVERS = ("exact", "greedy")
SPARTAN_BUDGETS = ("global", "uniform", "erk")
COST_MODELS = ("sparsity", "flops")


def check_method_options(cfg) -> None:
    if cfg.sparsity_pattern:
        parse_pattern(cfg.sparsity_pattern)
    for name, value, allowed in (("nm_solver", cfg.nm_solver, NM_SOLVERS),
                                 ("spartan_budget", cfg.spartan_budget, SPARTAN_BUDGETS),
                                 ("cost_model", cfg.cost_model, COST_MODELS)):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {list(allowed)}")
    if not 0.0 < cfg.init_density <= 1.0:
        raise ValueError(f"init_density must be in (0, 1], got {cfg.init_density}")
    if not 0.0 < cfg.prune_end_fraction <= 1.0:
        raise ValueError(f"prune_end_fraction must be in (0, 1], got {cfg.prune_end_fraction}")
    if len(cfg.block_dims) != 2 or min(cfg.block_dims) < 1:
        raise ValueError(f"block_dims must be two positive integers (out, in), got {list(cfg.block_dims)}")
    if cfg.spartan_beta <= 0:
        raise ValueError(f"spartan_beta must be > 0, got {cfg.spartan_beta}")


def _block_dims(text: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers like 16,16, got {text!r}") from None


def add_method_flags(g) -> None:
    """CLI flags of the method-specific fields (one per ``TrainConfig`` field, same name)."""
    g.add_argument("--sparsity-pattern", metavar="N:M[-T]",
                   help="N:M or transposable N:M-T masks with static/set/rigl, e.g. 2:4 or 4:8-T")
    g.add_argument("--nm-solver", choices=NM_SOLVERS, help="N:M-T tile solver (exact)")
    g.add_argument("--init-density", type=float, help="GraNet initial density d_i (1.0: dense-to-sparse)")
    g.add_argument("--prune-end-fraction", type=float,
                   help="GraNet: gradual pruning ends at this fraction of all steps (0.5)")
    g.add_argument("--block-dims", type=_block_dims, metavar="B0,B1", help="Spartan block (out, in) (1,1)")
    g.add_argument("--spartan-budget", choices=SPARTAN_BUDGETS, help="Spartan budget allocation (global)")
    g.add_argument("--cost-model", choices=COST_MODELS, help="Spartan cost per entry (sparsity)")
    g.add_argument("--spartan-beta", type=float, help="Spartan final sharpness β_T (10)")
