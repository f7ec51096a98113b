"""Masks on the sparse tensors: bool buffers next to the weights they mask.

For every sparse tensor ``<module>.<attr>`` (declared with :func:`sift_train.mark_sparse`) the module
gets a bool buffer ``<attr>_mask`` of the same shape, like ``torch.nn.utils.prune``'s ``weight_mask``:
it travels with ``state_dict()`` and can be read as ``model.layer1[0].conv1.weight_mask`` without any
sift class. The weight stays an ordinary ``nn.Parameter`` under its plain name.

Enforcement (sparse-ift.md §2.2, plus the Adam moments of ecosystem.md §1.2):

* forward: a forward pre-hook zeroes the inactive weights in place before the module runs whenever
  the weight changed since it was last masked (checked with the tensor's version counter, so it is
  free in ordinary training), so the forward pass always sees ``weight * mask`` while autograd still
  yields the dense gradient ``dL/dW`` that RigL grows by;
* before ``optimizer.step()``: gradients are multiplied by the mask, so weight decay and momentum see
  zero at inactive entries;
* after ``optimizer.step()``: weights and every optimizer-state tensor of the weight's shape (SGD
  ``momentum_buffer``, Adam ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``, ...) are multiplied by the
  mask, so nothing can revive a pruned weight.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .counts import active_count
from .sparse_params import sparse_parameters

MASK_SUFFIX = "_mask"


def _split(name: str) -> tuple[str, str]:
    prefix, _, attr = name.rpartition(".")
    return prefix, attr


class Masking:
    """Attach ``masks`` (``{qualified name: bool tensor}``) to the sparse tensors of ``model``.

    ``masks`` must cover exactly :func:`sparse_parameters(model) <sift_train.sparse_parameters>`.
    Weights are zeroed at inactive positions immediately. The bool buffers are the state; float copies
    are cached for fast multiplication and refreshed whenever a buffer changes (e.g. ``load_state_dict``).
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        params = sparse_parameters(model)
        if set(masks) != set(params):
            missing, extra = sorted(set(params) - set(masks)), sorted(set(masks) - set(params))
            raise ValueError(f"masks do not match the sparse tensors: missing {missing}, unknown {extra}")
        self.model = model
        self.params: dict[str, nn.Parameter] = params
        self._modules: dict[str, tuple[nn.Module, str]] = {}
        self._float: dict[str, tuple[int, int, torch.Tensor]] = {}  # name -> (buffer id, version, mask)
        self._clean: dict[str, int] = {}  # name -> weight version right after it was last masked
        by_module: dict[int, tuple[nn.Module, list[str]]] = {}
        for name, param in params.items():
            mask = masks[name]
            if tuple(mask.shape) != tuple(param.shape):
                raise ValueError(
                    f"{name}: mask shape {tuple(mask.shape)} != weight shape {tuple(param.shape)}"
                )
            prefix, attr = _split(name)
            module = model.get_submodule(prefix)
            module.register_buffer(attr + MASK_SUFFIX, mask.to(device=param.device, dtype=torch.bool))
            self._modules[name] = (module, attr)
            by_module.setdefault(id(module), (module, []))[1].append(name)
        for module, names in by_module.values():
            module.register_forward_pre_hook(self._forward_pre_hook(tuple(names)))
        self.apply_to_weights()

    # ---------------------------------------------------------------- reading
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{name: bool mask buffer}`` (the live buffers, read from the modules)."""
        return {n: getattr(m, a + MASK_SUFFIX) for n, (m, a) in self._modules.items()}

    def active_counts(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self.masks.items()}

    def _mask_f(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Float copy of the mask (multiplying by a bool tensor is ~10x slower on CPU)."""
        module, attr = self._modules[name]
        buf = getattr(module, attr + MASK_SUFFIX)
        cached = self._float.get(name)
        if (cached is None or cached[0] != id(buf) or cached[1] != buf._version
                or cached[2].dtype != like.dtype):
            cached = (id(buf), buf._version, buf.to(like.dtype))
            self._float[name] = cached
        return cached[2]

    # ---------------------------------------------------------------- enforcing
    @torch.no_grad()
    def apply_to_weights(self) -> None:
        for name, p in self.params.items():
            p.mul_(self._mask_f(name, p))
            self._clean[name] = p._version

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        for name, p in self.params.items():
            if p.grad is not None:
                p.grad.mul_(self._mask_f(name, p.grad))

    @torch.no_grad()
    def apply_to_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero every state tensor of the weight's shape at inactive positions."""
        for name, p in self.params.items():
            for value in optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.mul_(self._mask_f(name, value))

    @torch.no_grad()
    def set_masks(self, new: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        """Replace masks; newly active weights and their optimizer state start at zero (RigL
        ``grow_init='zeros'``, sparse-ift.md §2.5 step 4), dropped ones are zeroed."""
        for name, mask in new.items():
            module, attr = self._modules[name]
            buf = getattr(module, attr + MASK_SUFFIX)
            grown = mask & ~buf
            self.params[name].masked_fill_(grown, 0.0)
            if optimizer is not None:
                for value in optimizer.state.get(self.params[name], {}).values():
                    if torch.is_tensor(value) and value.shape == buf.shape:
                        value.masked_fill_(grown, 0.0)
            buf.copy_(mask)
        self.apply_to_weights()
        if optimizer is not None:
            self.apply_to_optimizer_state(optimizer)

    def attach(
        self,
        optimizer: torch.optim.Optimizer,
        before_mask: Callable[[], None] | None = None,
        after_step: Callable[[], None] | None = None,
    ) -> None:
        """Hook ``optimizer``: mask grads before each step and weights + state after it.

        ``before_mask`` runs in the pre-step hook before the gradients are masked (to read the dense
        gradient); ``after_step`` runs after the masks were re-applied (mask updates)."""

        def pre(opt, args, kwargs):
            if before_mask is not None:
                before_mask()
            self.apply_to_grads()

        def post(opt, args, kwargs):
            self.apply_to_weights()
            self.apply_to_optimizer_state(opt)
            if after_step is not None:
                after_step()

        optimizer.register_step_pre_hook(pre)
        optimizer.register_step_post_hook(post)

    def _forward_pre_hook(self, names: tuple[str, ...]):
        """Mask the module's sparse weights before its forward if they changed since last masked
        (tensor version counter: a user's edit, ``load_state_dict``, ...); otherwise a no-op."""

        def hook(module: nn.Module, args) -> None:
            for name in names:
                p = self.params[name]
                if p._version != self._clean.get(name):
                    with torch.no_grad():
                        p.mul_(self._mask_f(name, p))
                    self._clean[name] = p._version

        return hook


def random_masks(
    shapes: dict[str, tuple[int, ...]],
    sparsity: dict[str, float],
    generator: torch.Generator,
    exact: bool = True,
    counts: dict[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Initial random masks (sparse-ift.md §2.3).

    ``exact=True`` (paper): exactly ``counts[name]`` (default :func:`~sift_train.counts.active_count`) active
    entries per tensor, at uniformly random positions. ``exact=False`` (official code,
    ``OUT:206-209``): ``U(0,1) < 1 - s`` per entry. Masks are drawn on the generator's device.
    """
    dev = generator.device
    out = {}
    for name, shape in shapes.items():
        numel = int(torch.Size(shape).numel())
        if exact:
            flat = torch.zeros(numel, dtype=torch.bool, device=dev)
            n = counts[name] if counts is not None else active_count(numel, sparsity[name])
            flat[torch.randperm(numel, generator=generator, device=dev)[:n]] = True
            out[name] = flat.reshape(shape)
        else:
            out[name] = torch.rand(shape, generator=generator, device=dev) < (1.0 - sparsity[name])
    return out


def read_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: mask}`` of a model with attached masks, from its buffers (no sift objects needed)."""
    out = {}
    for name in sparse_parameters(model):
        prefix, attr = _split(name)
        out[name] = getattr(model.get_submodule(prefix), attr + MASK_SUFFIX)
    return out
