"""Sparse training inside any training loop: masks, a method and a schedule wired into the optimizer.

Per iteration the loop does what it always does (``loss.backward()``, possibly several times for
gradient accumulation, ``clip_grad_norm_``, ``optimizer.step()`` or ``GradScaler.step``); sift acts
only through hooks (sparse-ift.md §2.1 per-iteration order):

* during ``backward``: each sparse weight's gradient is masked by a tensor hook (:mod:`.masking`); if
  the coming step ``t + 1`` is a RigL update step, the unmasked gradient is summed first (over the
  micro-batches of the step) as the growth score;
* after the optimizer step ran: ``t += 1``; if ``t`` is an update step, new masks from the method,
  dropped weights and their optimizer state zeroed (regrown ones are already zero).

A step that did not run does not advance the schedule: ``GradScaler`` skips ``optimizer.step()`` when
the scaled gradients overflow, so no hook fires; optimizers that skip inside their own step (fused ones,
to which ``GradScaler`` hands ``optimizer.found_inf``) are recognised from that flag.

The unmasked gradient sum of an update step restarts when a micro-batch finds ``.grad`` empty, i.e.
after ``optimizer.zero_grad()`` (``set_to_none=True``, PyTorch's default); with
``zero_grad(set_to_none=False)`` the gradients of a RigL update iteration that ``GradScaler`` skipped
would stay in the sum.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .counts import active_count
from .distributions import distribute
from .masking import Masking, random_masks, read_masks
from .methods import MaskMethod, get_method
from .schedule import UpdateSchedule
from .sparse_params import sparse_parameters


def declared_sparse_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The model's sparse tensors; one-line ``ValueError`` if it declares none."""
    params = sparse_parameters(model)
    if not params:
        raise ValueError("SparseTraining: the model declares no sparse tensors; build it with "
                         "sift_train.sparse_ift(...) or mark layers with sift_train.mark_sparse")
    return params


def declared_masks(model: nn.Module, hint: str) -> dict[str, torch.Tensor]:
    """The model's ``<param>_mask`` buffers; one-line ``ValueError`` (ending "give sparsity=...
    {hint}") if it has none."""
    try:
        return read_masks(model)
    except AttributeError:
        raise ValueError("SparseTraining: the model's sparse tensors have no <param>_mask buffers; "
                         f"give sparsity=... {hint}") from None


class SparseTraining:
    """Dynamic (or static) sparse training of ``model``'s sparse tensors in your own loop.

    Parameters
    ----------
    model : nn.Module
        A model with declared sparse tensors: from :func:`sift_train.sparse_ift` (which also gives the
        Iso-FLOP masks) or :func:`sift_train.mark_sparse`.
    optimizer : torch.optim.Optimizer
        The optimizer over ``model``'s parameters; the loop calls only ``optimizer.step()``.
    method : {"rigl", "set", "static", "granet", "snip", "grasp", "force", "synflow", "spartan"}
        Pruning at init and GraNet set their own initial masks and schedule (``MaskMethod.prepare``);
        ``"spartan"`` returns a :class:`sift_train.methods.spartan.SpartanTraining` (global budget,
        density ``1 − sparsity``, snapshots every ``update_every`` steps).
    sparsity : float, optional
        ``None`` (default): keep the masks the model holds (``<param>_mask`` buffers, e.g. from
        ``sparse_ift``) and their active counts. A number: draw new random masks with this overall
        sparsity spread over the sparse tensors by ``distribution``.
    distribution : {"erk", "uniform"}
        Per-tensor sparsity when ``sparsity`` is given.
    total_steps : int, optional
        Optimizer steps of the whole run; mask updates stop at ``end_fraction`` of it (default 75 %,
        sparse-ift.md §2.5). Required unless ``method="static"``.
    update_every, drop_fraction, anneal, end_fraction
        RigL/SET schedule: ΔT, α₀ and its anneal (:class:`sift_train.schedule.UpdateSchedule`).
    seed : int
        Seed of the mask random generator (initial masks, SET growth).
    data : ScoringData, optional
        Scoring batches and input shape for ``snip``/``grasp``/``force``/``synflow``
        (:class:`sift_train.methods.pruning_at_init.ScoringData`).

    ``state_dict()``/``load_state_dict()`` hold the step counter and the mask RNG; masks are buffers in
    ``model.state_dict()``. :meth:`remove` restores a plain model.
    """

    def __new__(cls, model=None, optimizer=None, method: str = "rigl", *args, **kwargs):
        if method == "spartan":
            from .method_setup import spartan_training

            return spartan_training(model, optimizer, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        method: str = "rigl",
        sparsity: float | None = None,
        distribution: str = "erk",
        total_steps: int | None = None,
        update_every: int = 100,
        drop_fraction: float = 0.3,
        *,
        anneal: str = "cosine",
        end_fraction: float = 0.75,
        seed: int = 0,
        data=None,
    ):
        params = declared_sparse_parameters(model)
        mask_method = get_method(method)
        if mask_method.dynamic and (total_steps is None or total_steps < 1):
            raise ValueError(f"SparseTraining: method {method!r} needs total_steps >= 1 "
                             f"(optimizer steps of the run), got {total_steps!r}")
        generator = torch.Generator().manual_seed(seed)
        shapes = {n: tuple(p.shape) for n, p in params.items()}
        if sparsity is None:
            masks = {n: m.detach().clone() for n, m in declared_masks(model, "to draw masks").items()}
            targets = {n: int(m.sum()) for n, m in masks.items()}
        else:
            per_tensor = distribute(distribution, shapes, float(sparsity))
            targets = {n: active_count(p.numel(), per_tensor[n]) for n, p in params.items()}
            masks = random_masks(shapes, per_tensor, generator, counts=targets)
        schedule = UpdateSchedule.for_training(
            total_steps or 1, end_fraction, interval=update_every, drop_fraction=drop_fraction,
            anneal=anneal)
        masks, targets, schedule = mask_method.prepare(model, masks, targets, schedule,
                                                       total_steps=total_steps or 1, generator=generator,
                                                       data=data)
        self._setup(model, optimizer, masks, targets, mask_method, schedule, generator)

    @classmethod
    def from_parts(cls, model: nn.Module, optimizer: torch.optim.Optimizer,
                   masks: dict[str, torch.Tensor], targets: dict[str, int], method: MaskMethod,
                   schedule: UpdateSchedule, generator: torch.Generator) -> "SparseTraining":
        """Built from ready parts (what :mod:`sift_train.train` plans from a ``TrainConfig``).
        ``targets[name]`` is each tensor's active count after every update (sparse-ift.md §2.5 step
        3); the initial ``masks`` may have another count (Bernoulli init), which the first update
        corrects."""
        self = cls.__new__(cls)
        self._setup(model, optimizer, masks, targets, method, schedule, generator)
        return self

    def _setup(self, model, optimizer, masks, targets, method, schedule, generator) -> None:
        self.model = model
        self.masking = Masking(model, masks)
        self.optimizer = optimizer
        self.method = method
        self.schedule = schedule
        self.generator = generator
        self.targets = {n: int(targets[n]) for n in self.masking.params}
        self.step = 0
        self.last_update_step: int | None = None
        # called with the step number just before a mask update, while W ⊙ M is still the trained graph
        self.before_update: Callable[[int], None] | None = None
        self._dense_grads: dict[str, torch.Tensor] = {}
        if method.needs_dense_grad:
            self.masking.observer = self._observe
        self._handles = [optimizer.register_step_post_hook(self._after_step)]

    # ---------------------------------------------------------------- hooks
    def _update_due(self, t: int) -> bool:
        return self.method.dynamic and self.schedule.is_update_step(t)

    def _observe(self, name: str, grad: torch.Tensor) -> None:
        """Sum the unmasked gradient of the coming update step (over micro-batches); a fresh
        accumulation (``.grad`` is ``None`` after ``zero_grad()``) restarts the sum."""
        if not self._update_due(self.step + 1):
            return
        if name not in self._dense_grads or self.masking.params[name].grad is None:
            self._dense_grads[name] = grad.detach().clone()
        else:
            self._dense_grads[name] += grad.detach()

    def _after_step(self, optimizer, args, kwargs) -> None:
        found_inf = getattr(optimizer, "found_inf", kwargs.get("found_inf"))  # set by GradScaler
        if found_inf is not None and bool(found_inf.item() if torch.is_tensor(found_inf) else found_inf):
            self._dense_grads = {}
            return  # the optimizer skipped this step (GradScaler overflow)
        self.step += 1
        if not self._update_due(self.step):
            self._dense_grads = {}
            return
        if self.before_update is not None:
            self.before_update(self.step)
        grads = self._all_reduce(self._dense_grads)
        self._dense_grads = {}
        new = self.method.update_masks(
            {n: p.detach() for n, p in self.masking.params.items()},
            {n: grads.get(n) for n in self.masking.params},
            self.masking.masks,
            self.schedule.drop_fraction_at(self.step),
            self.schedule.targets_at(self.step, self.targets),
            self.generator,
        )
        self.masking.set_masks(new, self.optimizer)
        self.targets = self.masking.active_counts()
        self.last_update_step = self.step

    @staticmethod
    def _all_reduce(grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Under ``torch.distributed``, the growth scores are summed over ranks (the hook saw the local
        gradient; a sum ranks like the mean) so that every rank draws the same masks."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for g in grads.values():
                dist.all_reduce(g)
        return grads

    # ---------------------------------------------------------------- state
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return self.masking.masks

    def state_dict(self) -> dict:
        """Step counter and mask RNG (masks themselves are buffers in ``model.state_dict()``)."""
        return {"step": self.step, "last_update_step": self.last_update_step,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        last = state["last_update_step"]
        self.last_update_step = None if last is None else int(last)
        self.generator.set_state(state["generator"])

    def remove(self) -> None:
        """Detach sift from the model and optimizer: no hooks, no mask buffers."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.masking.remove()
