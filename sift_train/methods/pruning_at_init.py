"""Pruning at initialisation: SNIP, GraSP, FORCE, SynFlow (spec methods.md §3; Sparse-IFT Table 2).

Each method scores the sparse tensors of the initialised model once, before training, keeps the
``K = Σ targets`` best entries under **one global ranking** over all sparse tensors (exact count, ties
broken by position: earlier tensor, then lower flat index), and training then keeps those masks fixed
(static). Scores are computed on a deep copy of the model, so the trained model's weights and BN
statistics are untouched; sift's stem/classifier rule holds because only declared sparse tensors are
scored.

============  ===========================================  ============================  ============
method        score (kept: largest unless noted)            data                          BN mode
============  ===========================================  ============================  ============
``snip``      ``|w ⊙ ∂L/∂w|`` (Lee et al. 2019)              1 batch                       eval (SNP:10)
``grasp``     ``−w ⊙ Hg``, keep the *smallest*, logits/200   10 samples per class          train (GS:54)
``force``     ``|w₀ ⊙ ∂L/∂w|`` at ``w₀ ⊙ mask_k``, K = 10    1 fresh batch per step        train
              exponential steps ``d^{k/K}``, each from the
              dense init (de Jorge et al. 2021)
``synflow``   ``|w ⊙ ∂R/∂w|``, ``R = Σ f_{|θ|}(1)``,          none (all-ones input)         eval
              100 exponential rounds, float64
============  ===========================================  ============================  ============
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..sparse_params import sparse_parameters
from .base import MaskMethod

GRASP_TEMPERATURE = 200.0  # GS:49
GRASP_SAMPLES_PER_CLASS = 10  # GSC10
FORCE_STEPS = 10  # FT:30-53 (README uses 60 for CIFAR-100)
SYNFLOW_ROUNDS = 100  # SFA (paper runs)


@dataclass
class ScoringData:
    """What scoring may read: ``batches()`` yields fresh ``(x, y)`` training batches on the model's
    device (inputs already normalised, no augmentation); ``in_shape`` is one sample's shape."""

    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    in_shape: tuple[int, ...]


def global_topk(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Bool masks keeping the ``k`` largest scores over all tensors together (stable ties by position)."""
    flat = torch.cat([s.detach().flatten().double().cpu() for s in scores.values()])
    if not 0 <= k <= flat.numel():
        raise ValueError(f"global top-k: k = {k} outside [0, {flat.numel()}]")
    flat = flat.nan_to_num(nan=-float("inf"))
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        threshold = torch.topk(flat, k, sorted=False).values.min()
        keep = flat > threshold
        ties = torch.nonzero(flat == threshold).flatten()[: k - int(keep.sum())]
        keep[ties] = True
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start:start + s.numel()].reshape(s.shape).to(s.device)
        start += s.numel()
    return out


def exponential_counts(total: int, k: int, steps: int) -> list[int]:
    """Kept entries after each of ``steps`` rounds: ``int(N d^{j/steps})``, the last exactly ``k``
    (FORCE ``FA:164-168``, SynFlow ``SFL:15-24``)."""
    d = k / total
    return [max(int(total * d ** (j / steps)), k) for j in range(1, steps)] + [k]


def _loss_grads(model: nn.Module, params: dict[str, nn.Parameter], x, y, *, create_graph=False,
                temperature: float = 1.0):
    loss = nn.functional.cross_entropy(model(x) / temperature, y)
    return torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)


def snip_scores(model: nn.Module, data: ScoringData) -> dict[str, torch.Tensor]:
    """Connection sensitivity ``|w ⊙ g|`` on one batch, BN in inference mode (Lee et al. 2019, §3.1)."""
    net = copy.deepcopy(model).eval()
    params = sparse_parameters(net)
    x, y = next(iter(data.batches()))
    grads = _loss_grads(net, params, x, y)
    return {n: (p.detach() * g).abs() for (n, p), g in zip(params.items(), grads)}


def _class_balanced(data: ScoringData, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, counts = [], [], {}
    for x, y in data.batches():
        for xi, yi in zip(x, y):
            c = int(yi)
            if counts.get(c, 0) < per_class:
                counts[c] = counts.get(c, 0) + 1
                xs.append(xi)
                ys.append(yi)
    return torch.stack(xs), torch.stack(ys)


def grasp_scores(model: nn.Module, data: ScoringData) -> dict[str, torch.Tensor]:
    """``S = −w ⊙ Hg`` (Wang et al. 2020, §3.2): ``g`` the detached gradient of the class-balanced
    scoring set, ``Hg`` by double backprop of ``gᵀ∇L``, logits divided by 200, BN in train mode.
    GraSP removes the entries of *largest* ``S`` (GS:148-155), so :class:`GraSP` keeps the top of ``−S``."""
    net = copy.deepcopy(model).train()
    params = sparse_parameters(net)
    x, y = _class_balanced(data, GRASP_SAMPLES_PER_CLASS)
    g = [t.detach() for t in _loss_grads(net, params, x, y, temperature=GRASP_TEMPERATURE)]
    grads = _loss_grads(net, params, x, y, create_graph=True, temperature=GRASP_TEMPERATURE)
    dot = sum((gi * gj).sum() for gi, gj in zip(grads, g))
    hg = torch.autograd.grad(dot, list(params.values()))
    return {n: -(p.detach() * h) for (n, p), h in zip(params.items(), hg)}


def force_masks(model: nn.Module, data: ScoringData, k: int, steps: int = FORCE_STEPS) -> dict[str, torch.Tensor]:
    """FORCE (de Jorge et al. 2021, §3.3): ``steps`` exponential rounds to density ``d = k / N``; round
    ``j`` scores ``|w₀ ⊙ g|`` at the dense init with the previous mask's zeros applied (no gradient
    masking, so pruned weights can come back) on a fresh batch, and keeps the top ``N d^{j/steps}``."""
    net = copy.deepcopy(model).train()
    params = sparse_parameters(net)
    batches = data.batches()

    def scores(init: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = data.batches()
            x, y = next(batches)
        grads = _loss_grads(net, params, x, y)
        return {n: (init[n] * g).abs() for n, g in zip(params, grads)}

    return _iterative_prune(params, k, steps, scores)


def _iterative_prune(params: dict[str, torch.Tensor], k: int, rounds: int,
                     scores: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Shared loop of FORCE and SynFlow: from all-ones masks, ``rounds`` exponential rounds to ``k``
    entries; each round sets the weights to ``init ⊙ mask`` and keeps the global top of
    ``scores(init)``."""
    init = {n: p.detach().clone() for n, p in params.items()}
    total = sum(p.numel() for p in init.values())
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in init.items()}
    for count in exponential_counts(total, k, rounds):
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(init[n] * masks[n])
        masks = global_topk(scores(init), count)
    return masks


def _synflow_net(model: nn.Module) -> nn.Module:
    """Float64 eval-mode copy with every ``state_dict`` entry (BN buffers too) replaced by ``|·|``."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    return net


def _synflow_round(net: nn.Module, in_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    params = sparse_parameters(net)
    device = next(iter(params.values())).device
    ones = torch.ones((1, *in_shape), dtype=torch.float64, device=device)
    grads = torch.autograd.grad(net(ones).sum(), list(params.values()))
    return {n: (p.detach() * g).abs() for (n, p), g in zip(params.items(), grads)}


def synflow_scores(model: nn.Module, in_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """One SynFlow round on the dense model: ``|w ⊙ ∂R/∂w|``, ``R = Σ f_{|θ|}(1)`` (§3.4)."""
    return _synflow_round(_synflow_net(model), in_shape)


def synflow_masks(model: nn.Module, in_shape: tuple[int, ...], k: int,
                  rounds: int = SYNFLOW_ROUNDS) -> dict[str, torch.Tensor]:
    """SynFlow (Tanaka et al. 2020, §3.4), data-free: :func:`synflow_scores` with the current mask
    applied (pruned weights score 0 and stay pruned), ``rounds`` exponential rounds to ``k`` entries."""
    net = _synflow_net(model)
    return _iterative_prune(sparse_parameters(net), k, rounds, lambda init: _synflow_round(net, in_shape))


class PruningAtInit(MaskMethod):
    """Base of the four methods: masks chosen by :meth:`initial_masks`, then static training."""

    dynamic = False

    def initial_masks(self, model: nn.Module, targets: dict[str, int], data: ScoringData) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prepare(self, model, masks, targets, schedule, *, total_steps, generator, data=None):
        """Scored masks keeping ``Σ targets`` entries; targets become their per-tensor counts."""
        if data is None:
            what = "the input shape of one sample" if self.name == "synflow" else "training batches"
            raise ValueError(f"{self.name}: scoring needs {what}: pass data=ScoringData(batches, in_shape)")
        new = self.initial_masks(model, targets, data)
        return new, {n: int(m.sum()) for n, m in new.items()}, schedule


class SNIP(PruningAtInit):
    name = "snip"

    def initial_masks(self, model, targets, data):
        return global_topk(snip_scores(model, data), sum(targets.values()))


class GraSP(PruningAtInit):
    name = "grasp"

    def initial_masks(self, model, targets, data):
        return global_topk({n: -s for n, s in grasp_scores(model, data).items()}, sum(targets.values()))


class FORCE(PruningAtInit):
    name = "force"

    def initial_masks(self, model, targets, data):
        return force_masks(model, data, sum(targets.values()))


class SynFlow(PruningAtInit):
    name = "synflow"

    def initial_masks(self, model, targets, data):
        return synflow_masks(model, data.in_shape, sum(targets.values()))
