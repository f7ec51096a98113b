"""When full weight snapshots are written (``docs/run-format.md``, "Snapshot schedule").

Always: step 0 (``init``) and the last step (``final``). Optionally: just *before* every mask update
(``snapshot_updates``; the weights then still sit on the mask they were trained on, so |W ⊙ M| is the
trained graph), at every epoch end (``snapshot_epochs``), every ``snapshot_every`` steps, at the steps
``snapshot_at``, and at ``snapshot_log`` log-spaced steps between 1 and the last step. The mask chosen
by every update is kept separately and cheaply (bit-packed, ``masks/``) whatever the schedule.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from .sparse_params import sparse_parameters

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def log_steps(total: int, n: int) -> set[int]:
    """``n`` log-spaced steps in ``[1, total]`` (rounded; duplicates merged, so possibly fewer)."""
    if n <= 0 or total < 1:
        return set()
    return {int(round(v)) for v in np.geomspace(1, total, n)}


def scheduled_steps(total: int, every: int = 0, at: tuple[int, ...] = (), log: int = 0) -> set[int]:
    """Steps in ``[1, total]`` with an extra (``every``) snapshot: multiples of ``every``, ``at``,
    and :func:`log_steps`."""
    steps = set(range(every, total + 1, every)) if every > 0 else set()
    steps |= {int(s) for s in at if 1 <= int(s) <= total}
    return steps | log_steps(total, log)


def dense_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of every Linear/Conv1d/Conv2d that is *not* sparse (stem, classifier, shortcuts, the
    paper variant's Doped U and V), by qualified parameter name, in module order."""
    sparse = {id(p) for p in sparse_parameters(model).values()}
    return {f"{name}.weight" if name else "weight": m.weight for name, m in model.named_modules()
            if isinstance(m, _WEIGHTED) and id(m.weight) not in sparse}
