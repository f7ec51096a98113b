"""Body of one process of the 2-process DDP tests (test_distributed.py), started by
``torch.multiprocessing.spawn`` with the environment torchrun would give it.

It records, independently of sift's own checks, the masks of every update (``MaskMethod.update_masks``)
and every file write it attempts, then trains the jobs it is given."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def run(rank: int, world: int, port: int, base: str, jobs: list[tuple[str, dict, dict]],
        device: str = "cpu") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from sift_train import rundir
    from sift_train.methods import MaskMethod
    from sift_train.config import make_config
    from sift_train.distributed import shutdown_after
    from sift_train.train import train

    history: list[dict[str, torch.Tensor]] = []
    update_masks = MaskMethod.update_masks

    def recording_update_masks(self, *args):
        new = update_masks(self, *args)
        history.append({n: m.detach().cpu().clone() for n, m in new.items()})
        return new

    MaskMethod.update_masks = recording_update_masks
    writes: list[str] = []
    atomic = rundir.atomic_write_bytes

    def counting_write(path, data):
        writes.append(str(path))
        return atomic(path, data)

    rundir.atomic_write_bytes = counting_write
    base = Path(base)
    with shutdown_after():
        for name, cfg, kwargs in jobs:
            if name == "disagree":
                _disagree(rank, world, base)
                continue
            history.clear()
            cfg = {k: rank if v == "<rank>" else v for k, v in cfg.items()}
            info = train(make_config(**cfg), base / name, progress=False, device=device, **kwargs)
            torch.save(history, base / f"{name}.masks.rank{rank}.pt")
            (base / f"{name}.info.rank{rank}.json").write_text(json.dumps(info))
    (base / f"writes.rank{rank}.json").write_text(json.dumps(writes))


def _disagree(rank: int, world: int, base: Path) -> None:
    """Rank 1 holds a mask with one entry moved: check_masks_agree must raise on every rank."""
    from sift_train.distributed import Dist, check_masks_agree

    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, :3] = True
    if rank == 1:
        mask[0, 2], mask[3, 5] = False, True
    try:
        check_masks_agree(Dist(rank, world, rank), {"layer.weight": mask}, step=7)
        outcome = "agreed"
    except RuntimeError as exc:
        outcome = str(exc)
    (base / f"disagree.rank{rank}.txt").write_text(outcome)
