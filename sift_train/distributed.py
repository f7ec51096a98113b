"""Multi-process data-parallel training under ``torchrun`` (DDP; NCCL on CUDA, Gloo on CPU).

What keeps the masks identical on every rank (docs/training.md, "Several processes"):

* rank 0's model state, initial masks (bool buffers) and mask generator are broadcast at the start
  (and after a resume), so every rank starts from rank 0's draw;
* gradients are masked before DDP all-reduces them (a tensor hook, :mod:`sift_train.masking`); RigL's
  dense-gradient scores, which that hook sees per rank, are summed over ranks by
  :class:`~sift_train.sparse_training.SparseTraining` before an update, identical on every rank;
* SET's random growth and every tie-break use the shared generator state and identical inputs, so every
  rank computes the same new masks; :func:`check_masks_agree` verifies this after each update;
* only rank 0 writes the run folder.

``batch_size`` is the global batch of one optimizer step: each rank takes its contiguous share
(:func:`shard`), so a run gives the same global batches with any number of processes and resumes
with a different one.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (``world_size == 1``: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env(device_type: str) -> Dist:
    """Join the process group that torchrun describes in ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (and
    ``MASTER_ADDR``/``MASTER_PORT``); NCCL for ``cuda``, Gloo for ``cpu``. Without torchrun (or with
    one process) returns a single-process :class:`Dist`. An already initialised group is reused."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise ValueError(f"process group (rank {dist.get_rank()} of {dist.get_world_size()}) does not "
                         f"match WORLD_SIZE={world}, RANK={rank}")
    return Dist(rank, world, local)


def _comm(t: torch.Tensor) -> torch.Tensor:
    """NCCL moves CUDA tensors only; Gloo CPU ones. Bool is sent as uint8."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    return t.to(device=device, dtype=torch.uint8 if t.dtype == torch.bool else t.dtype).contiguous()


def broadcast_(tensors, src: int = 0) -> None:
    """Overwrite every tensor with rank ``src``'s value, in place."""
    for t in tensors:
        buf = _comm(t.detach())
        dist.broadcast(buf, src)
        with torch.no_grad():
            t.copy_(buf.to(device=t.device, dtype=t.dtype))


def sync_from_rank0(d: Dist, sparse) -> None:
    """Rank 0's parameters and buffers (masks included) and mask-generator state on every rank, for a
    :class:`~sift_train.sparse_training.SparseTraining` ``sparse``; the received masks are installed
    through ``set_masks`` so weights and optimizer state are re-masked with them."""
    if not d.enabled:
        return
    masking = sparse.masking
    broadcast_(list(masking.model.state_dict().values()))
    masking.set_masks({n: m.clone() for n, m in masking.masks.items()}, sparse.optimizer)
    state = sparse.generator.get_state()
    broadcast_([state])
    sparse.generator.set_state(state)


def wrap(d: Dist, model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (the model itself when single-process).

    No per-forward buffer broadcast: masks are kept identical by construction and need no per-step
    broadcast; BatchNorm running statistics stay per rank (rank 0's are evaluated and saved)."""
    if not d.enabled:
        return model
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.13 names it forward_sync_buffers (buffers are still synced once at construction)
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else "broadcast_buffers")
    return ddp(model, device_ids=[device.index] if device.type == "cuda" else None, **{no_sync: False})


def shard(d: Dist, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    if not d.enabled:
        return tensors
    return tuple(torch.tensor_split(t, d.world_size)[d.rank] for t in tensors)


def all_sum(d: Dist, values: list[torch.Tensor | float]) -> list[float]:
    """Sum scalars over ranks (float64)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if d.enabled:
        t = _comm(t)
        dist.all_reduce(t)
    return t.cpu().tolist()


def mask_fingerprint(masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per tensor: active count and two position sums (int64, wrapping) — equal masks give equal
    fingerprints; a different mask almost surely does not."""
    rows = []
    for m in masks.values():
        idx = torch.nonzero(m.reshape(-1)).reshape(-1)
        rows.append(torch.stack([idx.numel() * torch.ones((), dtype=torch.int64, device=idx.device),
                                 idx.sum(), (idx * (idx + 7)).sum()]))
    return torch.stack(rows).cpu()


def check_masks_agree(d: Dist, masks: dict[str, torch.Tensor], step: int) -> None:
    """Raise on every rank if any rank's masks differ from rank 0's (called after each mask update)."""
    if not d.enabled:
        return
    mine = mask_fingerprint(masks)
    ref = mine.clone()
    broadcast_([ref])
    differs = torch.tensor([float(not torch.equal(mine, ref))])
    if all_sum(d, [differs.item()])[0]:
        names = [n for n, a, b in zip(masks, mine, ref) if not torch.equal(a, b)]
        raise RuntimeError(f"ranks disagree on the masks after the update at step {step} "
                           f"(rank {d.rank}: {', '.join(names) or 'another rank'})")


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def broadcast_choice(d: Dist, value: str | None, choices: tuple[str, ...]) -> str:
    """Rank 0's ``value`` (one of ``choices``) on every rank."""
    index = broadcast_float(d, None if value is None else float(choices.index(value)))
    return choices[int(index)]


def broadcast_float(d: Dist, value: float | None) -> float | None:
    """Rank 0's value (``None`` as NaN) on every rank."""
    if not d.enabled:
        return value
    t = torch.tensor([float("nan") if value is None else float(value)], dtype=torch.float64)
    broadcast_([t])
    v = float(t.item())
    return None if v != v else v


def shutdown(synchronize: bool = True) -> None:
    """Leave the process group (end of a torchrun job); nothing without one.

    ``synchronize``: wait at a barrier first, so that no rank tears its Gloo/NCCL connections down while
    a peer still uses them (CI once saw a Gloo rank end with SIGABRT at exit without it). Pass ``False``
    on an error path, where a peer may never reach the barrier."""
    if dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def shutdown_after() -> Iterator[None]:
    """Run the block, then :func:`shutdown`: at a barrier after success, at once after an error."""
    try:
        yield
    except BaseException:
        shutdown(synchronize=False)  # a peer may never reach a barrier
        raise
    shutdown()
