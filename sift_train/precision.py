"""Mixed precision: ``autocast`` to bf16 or fp16, and a ``GradScaler`` for fp16
(Micikevicius et al. 2018, "Mixed Precision Training", §3.2 loss scaling).

A step whose scaled gradients overflow is skipped by the scaler: ``optimizer.step()`` is not called,
so its hooks do not run and the mask schedule (:class:`sift_train.sparse_training.SparseTraining`,
advanced in the optimizer's post-step hook) does not advance either.
"""
from __future__ import annotations

import contextlib

import torch

AMP_MODES = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """``autocast()`` for the forward pass, ``backward(loss)`` and ``step(optimizer)`` for the update."""

    def __init__(self, amp: str, device: torch.device):
        if amp not in AMP_MODES:
            raise ValueError(f"unknown --amp {amp!r}; expected one of {list(AMP_MODES)}")
        self.amp, self.device = amp, torch.device(device)
        self.dtype = _DTYPES.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; with fp16, unscale first and skip the step on inf/NaN gradients."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
