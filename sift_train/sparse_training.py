"""Wires masks, a method and a schedule into an optimizer (sparse-ift.md §2.1 per-iteration order).

Per iteration: ``loss.backward()`` → ``optimizer.step()``, whose hooks do, in order:
keep the dense gradient if the coming step ``t`` is an update step (RigL) → mask the gradients →
the optimizer's own step (weight decay, momentum) → re-mask weights and optimizer state →
``t += 1`` → if ``t`` is an update step: new masks from the method, regrown entries and their optimizer
state at zero. The training loop needs nothing but ``optimizer.step()``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .masking import Masking
from .methods import MaskMethod
from .schedule import UpdateSchedule


class SparseTraining:
    """Dynamic (or static) sparse training of ``model``'s sparse tensors.

    ``targets[name]`` is each tensor's active count after every update (sparse-ift.md §2.5 step 3);
    the initial ``masks`` may have another count (Bernoulli init), which the first update corrects.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        masks: dict[str, torch.Tensor],
        targets: dict[str, int],
        method: MaskMethod,
        schedule: UpdateSchedule,
        generator: torch.Generator,
    ):
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
        self._dense_grads: dict[str, torch.Tensor | None] = {}
        self.masking.attach(optimizer, before_mask=self._before_mask, after_step=self._after_step)

    def _update_due(self, t: int) -> bool:
        return self.method.dynamic and self.schedule.is_update_step(t)

    def _before_mask(self) -> None:
        if self.method.needs_dense_grad and self._update_due(self.step + 1):
            self._dense_grads = {
                n: None if p.grad is None else p.grad.detach().clone()
                for n, p in self.masking.params.items()
            }

    def _after_step(self) -> None:
        self.step += 1
        if not self._update_due(self.step):
            return
        if self.before_update is not None:
            self.before_update(self.step)
        masks = self.masking.masks
        new = self.method.update_masks(
            {n: p.detach() for n, p in self.masking.params.items()},
            self._dense_grads,
            masks,
            self.schedule.drop_fraction_at(self.step),
            self.targets,
            self.generator,
        )
        self._dense_grads = {}
        self.masking.set_masks(new, self.optimizer)
        self.last_update_step = self.step

    def state_dict(self) -> dict:
        """Step counter and mask RNG (masks themselves are buffers in ``model.state_dict()``)."""
        return {"step": self.step, "last_update_step": self.last_update_step,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        last = state["last_update_step"]
        self.last_update_step = None if last is None else int(last)
        self.generator.set_state(state["generator"])
