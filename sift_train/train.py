"""The training loop: build data, model, masks and optimizer from a :class:`TrainConfig`, train, evaluate,
and write the run folder (``docs/run-format.md``); resumes from the last epoch-end checkpoint."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import accounting, distributed, isoflop
from .config import TrainConfig
from .data import Batches, Dataset, load_dataset, prepare
from .datasets import dataset_info
from .devices import place, resolve_device, use_channels_last
from .distributions import distribute
from .counts import active_count
from .loader import DeviceLoader
from .lr import lr_at, total_steps
from .masking import random_masks
from .method_setup import plan_method, scoring_data
from .methods import get_method
from .models import build_model
from .modelsize import check_model_size
from .precision import Precision
from .rundir import RunDir
from .runstart import open_run, plan_start
from .schedule import UpdateSchedule
from .snapshots import dense_weights, scheduled_steps
from .sparse_params import sparse_parameters
from .sparse_training import SparseTraining
from .steps import StepRunner


@dataclass
class Setup:
    """Everything a run is made of, built deterministically from the config."""

    cfg: TrainConfig
    data: Dataset
    model: nn.Module
    optimizer: torch.optim.Optimizer
    sparse: SparseTraining
    mask_sparsity: dict[str, float]
    batches: Batches
    device: torch.device
    precision: Precision
    dist: distributed.Dist = distributed.Dist()
    extra: dict = field(default_factory=dict)  # method records for config.json (method_setup)


def mask_plan(cfg: TrainConfig, model: nn.Module) -> tuple[dict[str, float], dict[str, int]]:
    """Per-tensor mask sparsity and target active counts.

    ``uniform`` with ``iso_flop``: the Iso-FLOP search of :mod:`sift_train.isoflop` (its exact active
    counts); otherwise the distribution of ``cfg.sparsity`` with :func:`~sift_train.counts.active_count`
    counts.
    """
    params = sparse_parameters(model)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    if cfg.sparsity > 0 and cfg.iso_flop and cfg.distribution == "uniform":
        info = dataset_info(cfg.dataset)
        plan = isoflop.plan_masks(cfg.model, in_shape=info.in_shape, num_classes=info.num_classes,
                                  family=cfg.family, sparsity=cfg.sparsity, variant=cfg.variant)
        if set(plan.active) != set(shapes):
            raise ValueError(f"Iso-FLOP plan does not cover the model's sparse tensors ({cfg.model})")
        return {n: plan.mask_sparsity for n in shapes}, dict(plan.active)
    if cfg.sparsity == 0:
        sparsity = {n: 0.0 for n in shapes}
    else:
        sparsity = distribute(cfg.distribution, shapes, cfg.sparsity)
    return sparsity, {n: active_count(p.numel(), sparsity[n], cfg.variant) for n, p in params.items()}


def build(cfg: TrainConfig, device: str | torch.device = "cpu") -> Setup:
    """Seeded construction: data, model, initial masks (exact or Bernoulli by variant), optimizer.
    Masks, the mask generator and the model live on ``device`` (channels-last for conv models on CUDA)."""
    device = resolve_device(device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    info = dataset_info(cfg.dataset)
    model = place(build_model(cfg.model, in_shape=info.in_shape, num_classes=info.num_classes,
                              family=cfg.family, sparsity=cfg.sparsity, variant=cfg.variant), device)
    mask_sparsity, targets = mask_plan(cfg, model)
    shapes = {n: tuple(p.shape) for n, p in sparse_parameters(model).items()}
    mask_gen = torch.Generator(device).manual_seed(cfg.seed)
    masks = random_masks(shapes, mask_sparsity, mask_gen, exact=cfg.variant == "paper", counts=targets)
    optimizer = make_optimizer(cfg, model)
    batches = Batches(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed)
    total = total_steps(cfg, len(batches))
    schedule = UpdateSchedule.for_training(total, cfg.end_fraction, interval=cfg.update_interval,
                                           drop_fraction=cfg.drop_fraction, anneal=cfg.anneal)
    plan = plan_method(cfg, model, get_method(cfg.method), masks, targets, schedule, total,
                       scoring_data(cfg, data, device), mask_gen)
    sparse = plan.build(model, optimizer, mask_gen)
    return Setup(cfg, data, model, optimizer, sparse, plan.mask_sparsity(mask_sparsity), batches, device,
                 Precision(cfg.amp, device), extra=plan.extra)


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (Nesterov) or Adam; ``paper`` excludes 1-D parameters (BN γ/β, biases) from weight decay
    (App. C.1), ``official`` decays all (sparse-ift.md §6 item 6)."""
    params = list(model.parameters())
    if cfg.variant == "paper":
        decay = [p for p in params if p.dim() > 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    else:
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.Adam(groups, lr=cfg.lr)


@torch.no_grad()
def evaluate(setup: Setup) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on the test split."""
    model, ds = setup.model, setup.data
    was_training = model.training
    model.eval()
    loss, correct, n = 0.0, 0, 0
    for x, y, _ in Batches(ds.test, setup.cfg.eval_batch_size, shuffle=False).epoch(0):
        x, y = prepare(x, ds, False, None).to(setup.device), y.to(setup.device)
        out = model(x)
        loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    model.train(was_training)
    return loss / n, correct / n


def snapshot_tensors(setup: Setup) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    masks = setup.sparse.masking.masks
    weights = getattr(setup.sparse, "snapshot_weights", None)  # Spartan: the soft-scaled weights
    weights = weights() if weights else {n: p.detach() for n, p in setup.sparse.masking.params.items()}
    return {n: (masks[n].cpu().numpy(), w.cpu().float().numpy()) for n, w in weights.items()}


def snapshot_dense(setup: Setup) -> dict[str, np.ndarray]:
    """Every dense Linear/Conv weight (stem, classifier, Doped's paper-variant U/V)."""
    return {n: p.detach().cpu().float().numpy() for n, p in dense_weights(setup.model).items()}


class _Recorder:
    """Metrics rows and snapshots of one run (running training means since the previous row).

    Under DDP every rank calls :meth:`record` at the same steps: the training means are summed over
    ranks, then rank 0 alone evaluates and writes."""

    def __init__(self, setup: Setup, run: RunDir):
        self.setup, self.run = setup, run
        self.steps_per_epoch = len(setup.batches)
        self.info = dataset_info(setup.cfg.dataset)
        self._flops: tuple[tuple[int, ...], int] | None = None
        self.last_step: int | None = None  # step of the last row recorded
        self.lr = setup.cfg.lr  # learning rate of the current step (for the pre-update hook)
        self.reset()

    def reset(self):
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def add(self, loss_sum, correct, n: int):
        """``loss_sum``/``correct`` of ``n`` samples (device tensors: read only when recording)."""
        self.loss_sum += loss_sum
        self.correct += correct
        self.seen += n

    def flops(self) -> int:
        """Forward FLOPs with the current active counts (recounted only when a count changed)."""
        active = self.setup.sparse.masking.active_counts()
        key = tuple(active.values())
        if self._flops is None or self._flops[0] != key:
            self._flops = (key, accounting.forward_flops(self.setup.model, self.info.in_shape, active))
        return self._flops[1]

    def _summed(self) -> list:
        """``loss_sum``, ``correct``, ``seen`` summed over the ranks."""
        return distributed.all_sum(self.setup.dist, [self.loss_sum, self.correct, self.seen])

    def record(self, step: int, reason: str | None, lr: float) -> float | None:
        loss_sum, correct, seen = self._summed()
        self.reset()
        self.last_step = step
        if not np.isfinite(loss_sum):
            raise ValueError(f"{self.run.path}: training loss is {loss_sum / max(seen, 1)} by step {step} "
                             f"(diverged; try a lower --lr); "
                             + ("the last checkpoint is kept for --resume" if self.run.has_checkpoint
                                else "no checkpoint was written yet"))
        if not self.setup.dist.is_main:
            return None
        test_loss, test_acc = evaluate(self.setup)
        epoch = step / self.steps_per_epoch
        self.run.append_metrics({
            "step": step, "epoch": epoch,
            "train_loss": loss_sum / seen if seen else None,
            "train_acc": correct / seen if seen else None,
            "test_loss": test_loss, "test_acc": test_acc, "lr": lr, "flops": self.flops()})
        if reason is not None:
            self.run.write_snapshot(step, epoch, test_acc, reason, snapshot_tensors(self.setup),
                                    snapshot_dense(self.setup))
        return test_acc

    def state_dict(self) -> dict:
        """Training sums not yet in a row (a row can span an epoch end, so a resume must keep them).
        Summed over ranks: rank 0 carries the total on, the other ranks restart from zero."""
        loss_sum, correct, seen = self._summed()
        if not self.setup.dist.is_main:
            loss_sum, correct, seen = 0.0, 0, 0
        self.loss_sum, self.correct, self.seen = loss_sum, int(correct), int(seen)
        return {"loss_sum": float(loss_sum), "correct": int(correct), "seen": int(seen)}

    def load_state_dict(self, state: dict) -> None:
        if self.setup.dist.is_main:
            self.loss_sum, self.correct, self.seen = float(state["loss_sum"]), int(state["correct"]), \
                int(state["seen"])

    def before_update(self, step: int) -> None:
        """Snapshot hook of :class:`SparseTraining`: the trained graph, just before its mask update
        (``docs/run-format.md``, "Why before the update")."""
        if self.setup.cfg.snapshot_updates:
            self.record(step, "mask_update", self.lr)


def checkpoint_state(setup: Setup, epoch: int, recorder: dict) -> dict:
    """Everything a bit-identical resume needs; ``recorder`` is :meth:`_Recorder.state_dict`."""
    state = {"epoch": epoch, "step": setup.sparse.step, "recorder": recorder,
             "model": setup.model.state_dict(),
             "optimizer": setup.optimizer.state_dict(), "sparse": setup.sparse.state_dict(),
             "precision": setup.precision.state_dict(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore(setup: Setup, state: dict, rec: _Recorder) -> int:
    gen = setup.sparse.generator
    if state["sparse"]["generator"].numel() != gen.get_state().numel():
        raise ValueError(f"checkpoint's mask generator is not a {gen.device.type} generator; resume on "
                         f"the device type the run was trained on")
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.sparse.load_state_dict(state["sparse"])
    setup.precision.load_state_dict(state.get("precision", {}))
    if "recorder" in state:  # older checkpoints: the fresh recorder's zero sums
        rec.load_state_dict(state["recorder"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["epoch"])


def restore_checkpoint(setup: Setup, run: RunDir, rec: _Recorder) -> int:
    """:func:`restore` from ``run``'s checkpoint; one ``ValueError`` naming the file if it does not fit."""
    state = run.load_checkpoint(map_location=setup.device)
    try:
        return restore(setup, state, rec)
    except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{run.checkpoint}: checkpoint does not fit this run's model ({reason})") from None


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, device: str = "cpu",
          progress: bool = True, stop_after_epoch: int | None = None, prefetch: int | None = None) -> dict:
    """Train ``cfg`` into the run folder ``out``; returns the ``done.json`` content (or, when stopped
    early by ``stop_after_epoch``, the state reached). ``resume`` continues from the last checkpoint.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this with the same arguments; they train
    one model with DDP (:mod:`sift_train.distributed`) and rank 0 alone opens, locks and writes ``out``.
    ``prefetch``: batches prepared ahead in a background thread (default 2 on CUDA, 0 on CPU)."""
    d = distributed.from_env(resolve_device(device).type)
    dev = resolve_device(device, d.local_rank if d.enabled else None)
    run = RunDir(out)
    check_model_size(cfg, dev)  # before anything is allocated or written
    if d.enabled:
        plan_start(run, cfg, resume)  # reads only: every rank refuses a folder alike
        distributed.barrier(d)
    if not d.is_main:
        start = distributed.broadcast_choice(d, None, START_STATES)
        return run.read_done() if start == "done" else _train(cfg, run, start, dev, progress,
                                                                  stop_after_epoch, prefetch, d)
    with open_run(run, cfg, resume) as start:  # refuses foreign folders, holds the run's lock
        distributed.broadcast_choice(d, start, START_STATES)
        if start == "done":
            return run.read_done()
        return _train(cfg, run, start, dev, progress, stop_after_epoch, prefetch, d)


START_STATES = ("fresh", "resume", "restart", "done")  # sift_train.runstart.plan_start


def _train(cfg: TrainConfig, run: RunDir, start: str, device: torch.device, progress: bool,
           stop_after_epoch: int | None, prefetch: int | None, d: distributed.Dist) -> dict:
    setup = build(cfg, device)
    setup.dist = d
    check_split(cfg, len(setup.data.train.y), d.world_size)
    rec = _Recorder(setup, run)
    start_epoch = 0
    if start == "resume":
        start_epoch = restore_checkpoint(setup, run, rec)
        if d.is_main:
            run.rewind(setup.sparse.step)
    elif d.is_main:
        run.create()
        shapes = {n: tuple(p.shape) for n, p in setup.sparse.masking.params.items()}
        run.write_config(cfg.to_dict(), setup.mask_sparsity, shapes, setup.sparse.targets, extra=setup.extra,
                         dense_tensors={n: tuple(p.shape) for n, p in dense_weights(setup.model).items()})
        run.rewind(-1)
    distributed.sync_from_rank0(d, setup.sparse)
    if start != "resume":
        rec.record(0, "init", lr_at(cfg, 0, len(setup.batches)))
    if prefetch is None:
        prefetch = 2 if setup.device.type == "cuda" else 0
    info = _loop(setup, run, rec, start_epoch, progress, stop_after_epoch, prefetch)
    info["test_acc"] = distributed.broadcast_float(d, info["test_acc"])
    return info


def check_split(cfg: TrainConfig, n_train: int, world_size: int) -> None:
    """Every global batch (the last one of an epoch too) must give each rank and micro-batch a sample."""
    smallest = min(cfg.batch_size, n_train % cfg.batch_size or cfg.batch_size)
    if smallest < world_size * cfg.accumulate:
        raise ValueError(f"a global batch of {smallest} samples cannot be split over {world_size} "
                         f"process(es) x {cfg.accumulate} micro-batch(es); change --batch-size or --accumulate")


def _after_update(setup: Setup, run: RunDir, step: int) -> None:
    """After a mask update: ranks agree on the masks; rank 0 keeps them, bit-packed, in ``masks/``."""
    distributed.check_masks_agree(setup.dist, setup.sparse.masking.masks, step)
    if setup.dist.is_main:
        run.write_masks(step, {n: m.cpu().numpy() for n, m in setup.sparse.masking.masks.items()})


def _loop(setup: Setup, run: RunDir, rec: _Recorder, start_epoch: int, progress: bool,
          stop_after_epoch: int | None, prefetch: int) -> dict:
    cfg, opt, sparse, d = setup.cfg, setup.optimizer, setup.sparse, setup.dist
    spe = len(setup.batches)
    total = total_steps(cfg, spe)
    index = start_epoch * spe  # global batches consumed (optimizer steps attempted)
    bar = tqdm(total=total, initial=index, disable=not progress or not d.is_main, unit="step",
               desc=Path(run.path).name, leave=False, dynamic_ncols=True)
    test_acc = run.last_test_acc() if d.is_main else None
    runner = StepRunner(distributed.wrap(d, setup.model, setup.device), opt, setup.precision, d,
                        cfg.accumulate)
    loader = DeviceLoader(setup.batches, setup.data, setup.device, d, prefetch,
                          use_channels_last(setup.model, setup.device))
    extra = scheduled_steps(total, cfg.snapshot_every, cfg.snapshot_at, cfg.snapshot_log)
    sparse.before_update = rec.before_update
    setup.model.train()
    for epoch in range(start_epoch, cfg.epochs):
        for x, y, n in loader.epoch(epoch):
            lr = rec.lr = lr_at(cfg, index, spe)
            for group in opt.param_groups:
                group["lr"] = lr
            before = sparse.step
            rec.add(*runner.step(x, y, n), len(y))
            index += 1
            bar.update(1)
            step = sparse.step
            if step != before and sparse.last_update_step == step:
                _after_update(setup, run, step)
                if rec.last_step == step and d.is_main:  # snapshot taken just before the update
                    test_acc = run.last_test_acc()
            if index % spe == 0 or index >= total:
                break  # epoch (or run) end: recorded below
            if step == before or rec.last_step == step:
                continue  # skipped by the fp16 GradScaler, or recorded just before its mask update
            if step in extra:
                test_acc = rec.record(step, "every", lr)
        step = sparse.step
        last = epoch + 1 == cfg.epochs or index >= total
        if rec.last_step != step:  # not already recorded just before a mask update at this step
            reason = ("final" if last else "epoch_end" if cfg.snapshot_epochs
                      else "every" if step in extra else None)
            test_acc = rec.record(step, reason, lr_at(cfg, index, spe))
        sums = rec.state_dict()  # on every rank: summed over ranks under DDP
        if d.is_main:
            bar.set_postfix(test=f"{test_acc:.3f}", refresh=False)
            run.save_checkpoint(checkpoint_state(setup, epoch + 1, sums))
        if last:
            break
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            bar.close()
            return {"step": step, "epoch": epoch + 1, "test_acc": test_acc, "stopped": True}
    bar.close()
    info = {"step": sparse.step, "epoch": index // spe if index % spe == 0 else index / spe,
            "test_acc": test_acc}
    if d.is_main:
        run.write_done(info)
    return info
