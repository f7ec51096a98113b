"""The training loop: build data, model, masks and optimizer from a :class:`TrainConfig`, train, evaluate,
and write the run folder (``docs/run-format.md``); resumes from the last epoch-end checkpoint."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import accounting, isoflop
from .config import TrainConfig, lr_at_epoch
from .data import Batches, Dataset, load_dataset, prepare
from .datasets import dataset_info
from .distributions import distribute
from .counts import active_count
from .masking import random_masks
from .methods import get_method
from .models import build_model
from .rundir import RunDir
from .schedule import UpdateSchedule
from .snapshots import dense_weights, scheduled_steps
from .sparse_params import sparse_parameters
from .sparse_training import SparseTraining


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
    """Seeded construction: data, model, initial masks (exact or Bernoulli by variant), optimizer."""
    device = check_device(device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    info = dataset_info(cfg.dataset)
    model = build_model(cfg.model, in_shape=info.in_shape, num_classes=info.num_classes,
                        family=cfg.family, sparsity=cfg.sparsity, variant=cfg.variant).to(device)
    mask_sparsity, targets = mask_plan(cfg, model)
    shapes = {n: tuple(p.shape) for n, p in sparse_parameters(model).items()}
    mask_gen = torch.Generator().manual_seed(cfg.seed)
    masks = random_masks(shapes, mask_sparsity, mask_gen, exact=cfg.variant == "paper", counts=targets)
    optimizer = make_optimizer(cfg, model)
    batches = Batches(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed)
    schedule = UpdateSchedule.for_training(
        len(batches) * cfg.epochs, cfg.end_fraction, interval=cfg.update_interval,
        drop_fraction=cfg.drop_fraction, anneal=cfg.anneal)
    sparse = SparseTraining(model, optimizer, masks, targets, get_method(cfg.method), schedule, mask_gen)
    return Setup(cfg, data, model, optimizer, sparse, mask_sparsity, batches, device)


def check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: sift_train runs on cpu or cuda")
    return dev


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
    return {n: (masks[n].cpu().numpy(), p.detach().cpu().float().numpy())
            for n, p in setup.sparse.masking.params.items()}


def snapshot_dense(setup: Setup) -> dict[str, np.ndarray]:
    """Every dense Linear/Conv weight (stem, classifier, Doped's paper-variant U/V)."""
    return {n: p.detach().cpu().float().numpy() for n, p in dense_weights(setup.model).items()}


class _Recorder:
    """Metrics rows and snapshots of one run (running training means since the previous row)."""

    def __init__(self, setup: Setup, run: RunDir):
        self.setup, self.run = setup, run
        self.steps_per_epoch = len(setup.batches)
        self.info = dataset_info(setup.cfg.dataset)
        self._flops: tuple[tuple[int, ...], int] | None = None
        self.last_step: int | None = None  # step of the last row recorded
        self.lr = setup.cfg.lr
        self.reset()

    def reset(self):
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def add(self, loss: float, correct: int, n: int):
        self.loss_sum += loss * n
        self.correct += correct
        self.seen += n

    def flops(self) -> int:
        """Forward FLOPs with the current active counts (recounted only when a count changed)."""
        active = self.setup.sparse.masking.active_counts()
        key = tuple(active.values())
        if self._flops is None or self._flops[0] != key:
            self._flops = (key, accounting.forward_flops(self.setup.model, self.info.in_shape, active))
        return self._flops[1]

    def record(self, step: int, reason: str | None, lr: float) -> float:
        test_loss, test_acc = evaluate(self.setup)
        epoch = step / self.steps_per_epoch
        self.run.append_metrics({
            "step": step, "epoch": epoch,
            "train_loss": self.loss_sum / self.seen if self.seen else None,
            "train_acc": self.correct / self.seen if self.seen else None,
            "test_loss": test_loss, "test_acc": test_acc, "lr": lr, "flops": self.flops()})
        self.reset()
        self.last_step = step
        if reason is not None:
            self.run.write_snapshot(step, epoch, test_acc, reason, snapshot_tensors(self.setup),
                                    snapshot_dense(self.setup))
        return test_acc

    def before_update(self, step: int) -> None:
        """Snapshot hook of :class:`SparseTraining`: the trained graph, just before its mask update."""
        if self.setup.cfg.snapshot_updates:
            self.record(step, "mask_update", self.lr)


def checkpoint_state(setup: Setup, epoch: int) -> dict:
    state = {"epoch": epoch, "step": setup.sparse.step, "model": setup.model.state_dict(),
             "optimizer": setup.optimizer.state_dict(), "sparse": setup.sparse.state_dict(),
             "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore(setup: Setup, state: dict) -> int:
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.sparse.load_state_dict(state["sparse"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["epoch"])


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, device: str = "cpu",
          progress: bool = True, stop_after_epoch: int | None = None) -> dict:
    """Train ``cfg`` into the run folder ``out``; returns the ``done.json`` content (or, when stopped
    early by ``stop_after_epoch``, the state reached). ``resume`` continues from the last checkpoint."""
    run = RunDir(out)
    if run.done:
        if resume:
            return run.read_done()
        raise ValueError(f"{run.path}: run already finished (done.json); choose another --out")
    if not run.is_empty() and not resume:
        raise ValueError(f"{run.path}: folder exists and is not empty; pass --resume to continue it")
    if resume and run.has_checkpoint:
        saved = TrainConfig.from_dict(run.read_config()["config"]).to_dict()
        diff = sorted(k for k, v in cfg.to_dict().items() if saved.get(k) != v and k != "data_dir")
        if diff:
            raise ValueError(f"{run.path}: --resume with a different config (fields {', '.join(diff)})")
    setup = build(cfg, device)
    rec = _Recorder(setup, run)
    start_epoch = 0
    if resume and run.has_checkpoint:
        start_epoch = restore(setup, run.load_checkpoint(map_location=setup.device))
        run.rewind(setup.sparse.step)
    else:
        run.create()
        shapes = {n: tuple(p.shape) for n, p in setup.sparse.masking.params.items()}
        run.write_config(cfg.to_dict(), setup.mask_sparsity, shapes, setup.sparse.targets)
        run.rewind(-1)
        rec.record(0, "init", lr_at_epoch(cfg, 0))
    return _loop(setup, run, rec, start_epoch, progress, stop_after_epoch)


def _loop(setup: Setup, run: RunDir, rec: _Recorder, start_epoch: int, progress: bool,
          stop_after_epoch: int | None) -> dict:
    cfg, model, opt, sparse, ds = setup.cfg, setup.model, setup.optimizer, setup.sparse, setup.data
    spe = len(setup.batches)
    bar = tqdm(total=spe * cfg.epochs, initial=sparse.step, disable=not progress, unit="step",
               desc=Path(run.path).name, leave=False, dynamic_ncols=True)
    test_acc = run.last_test_acc()
    extra = scheduled_steps(spe * cfg.epochs, cfg.snapshot_every, cfg.snapshot_at, cfg.snapshot_log)
    sparse.before_update = rec.before_update
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        lr = rec.lr = lr_at_epoch(cfg, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        for x, y, gen in setup.batches.epoch(epoch):
            x = prepare(x, ds, True, gen).to(setup.device)
            y = y.to(setup.device)
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            loss.backward()
            opt.step()
            step = sparse.step
            loss_value = float(loss.detach())
            if not np.isfinite(loss_value):
                bar.close()
                raise ValueError(f"{run.path}: training loss is {loss_value} at step {step} (diverged; "
                                 f"try a lower --lr); the last checkpoint is kept for --resume")
            rec.add(loss_value, int((out.argmax(1) == y).sum()), len(y))
            bar.update(1)
            bar.set_postfix(loss=f"{rec.loss_sum / rec.seen:.3f}", acc=f"{rec.correct / rec.seen:.3f}",
                            test=f"{test_acc:.3f}" if test_acc is not None else "-", refresh=False)
            if sparse.last_update_step == step:
                run.write_masks(step, {n: m.cpu().numpy() for n, m in sparse.masking.masks.items()})
                if rec.last_step == step:
                    test_acc = run.last_test_acc()
            if step % spe == 0 or rec.last_step == step:
                continue  # epoch end: recorded below
            if step in extra:
                test_acc = rec.record(step, "every", lr)
        step = sparse.step
        last = epoch + 1 == cfg.epochs
        if rec.last_step != step:  # not already recorded just before a mask update at this step
            reason = ("final" if last else "epoch_end" if cfg.snapshot_epochs
                      else "every" if step in extra else None)
            test_acc = rec.record(step, reason, lr_at_epoch(cfg, epoch + 1))
        run.save_checkpoint(checkpoint_state(setup, epoch + 1))
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not last:
            bar.close()
            return {"step": step, "epoch": epoch + 1, "test_acc": test_acc, "stopped": True}
    bar.close()
    info = {"step": sparse.step, "epoch": cfg.epochs, "test_acc": test_acc}
    run.write_done(info)
    return info
