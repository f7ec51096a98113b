"""Masks on the sparse tensors: bool buffers next to the weights they mask.

For every sparse tensor ``<module>.<attr>`` (declared with :func:`sift_train.mark_sparse`) the module
gets a bool buffer ``<attr>_mask`` of the same shape, like ``torch.nn.utils.prune``'s ``weight_mask``:
it travels with ``state_dict()`` and can be read as ``model.layer1[0].conv1.weight_mask`` without any
sift class. The weight stays an ordinary ``nn.Parameter`` under its plain name.

Invariant: inactive weights and their optimizer state are exactly zero. Three steps keep it
(sparse-ift.md §2.2; ecosystem.md §1.2), each needed (``tests/test_masking.py``):

1. **gradient hook** (``Tensor.register_hook`` on each sparse weight): every gradient that reaches
   ``.grad`` is ``grad * mask``, so ``clip_grad_norm_``, gradient logging, weight decay, momentum and
   Adam moments all see zeros at inactive entries, and an inactive weight that is zero stays zero under
   SGD (+ momentum, Nesterov, weight decay), Adam(W), AMSGrad, RMSprop, Adagrad. The hook can pass the
   unmasked gradient to an observer first (RigL's growth criterion).
2. **on a mask change** (:meth:`Masking.set_masks`, construction): weights and every optimizer-state
   tensor of the weight's shape (SGD ``momentum_buffer``, Adam ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``,
   ...) are zeroed where the mask is off, so a dropped weight's momentum cannot revive it; grown entries
   were inactive, hence already zero (RigL ``grow_init='zeros'``).
3. **after ``model.load_state_dict``** (a load-state-dict post-hook on the model): weights are re-masked
   with the loaded masks.

:meth:`Masking.remove` deletes the hooks and the mask buffers and leaves a plain model.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .counts import active_count
from .sparse_params import sparse_parameters

MASK_SUFFIX = "_mask"

GradObserver = Callable[[str, torch.Tensor], None]


def _split(name: str) -> tuple[str, str]:
    prefix, _, attr = name.rpartition(".")
    return prefix, attr


class Masking:
    """Attach ``masks`` (``{qualified name: bool tensor}``) to the sparse tensors of ``model``.

    ``masks`` must cover exactly :func:`sparse_parameters(model) <sift_train.sparse_parameters>`.
    Weights are zeroed at inactive positions immediately. ``observer(name, grad)``, if set, sees each
    unmasked gradient before the hook masks it.
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        params = sparse_parameters(model)
        if set(masks) != set(params):
            missing, extra = sorted(set(params) - set(masks)), sorted(set(masks) - set(params))
            raise ValueError(f"masks do not match the sparse tensors: missing {missing}, unknown {extra}")
        self.model = model
        self.params: dict[str, nn.Parameter] = params
        self.observer: GradObserver | None = None
        self._modules: dict[str, tuple[nn.Module, str]] = {}
        self._float: dict[str, torch.Tensor] = {}  # float copies: multiplying by bool is ~10x slower
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
        self._handles = [p.register_hook(self._grad_hook(n)) for n, p in params.items()]
        self._handles.append(model.register_load_state_dict_post_hook(self._after_load))
        self._refresh()

    # ---------------------------------------------------------------- reading
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{name: bool mask buffer}`` (the live buffers, read from the modules)."""
        return {n: getattr(m, a + MASK_SUFFIX) for n, (m, a) in self._modules.items()}

    def active_counts(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self.masks.items()}

    # ---------------------------------------------------------------- enforcing
    @torch.no_grad()
    def _refresh(self) -> None:
        """Float copies of the masks, then weights zeroed where the mask is off."""
        for name, mask in self.masks.items():
            p = self.params[name]
            self._float[name] = mask.to(p.dtype)
            p.mul_(self._float[name])

    def _grad_hook(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            if self.observer is not None:
                self.observer(name, grad)
            return grad * self._float[name].to(grad.dtype)

        return hook

    def _after_load(self, module: nn.Module, incompatible_keys) -> None:
        self._refresh()

    @torch.no_grad()
    def set_masks(self, new: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        """Replace masks; weights and ``optimizer``'s state tensors of the weight's shape are zeroed
        wherever the new mask is off (sparse-ift.md §2.5 step 4)."""
        for name, mask in new.items():
            module, attr = self._modules[name]
            getattr(module, attr + MASK_SUFFIX).copy_(mask)
            if optimizer is not None:
                p = self.params[name]
                for value in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value.masked_fill_(~mask, 0.0)
        self._refresh()

    def remove(self) -> None:
        """Remove every hook and mask buffer: ``model`` becomes a plain model again (inactive weights
        stay zero)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for module, attr in self._modules.values():
            delattr(module, attr + MASK_SUFFIX)
        self._modules, self._float, self.observer = {}, {}, None


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
