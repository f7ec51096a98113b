"""Parameter and FLOP accounting: closed forms, torch's FLOP counter, and the spec §5 table."""
from fractions import Fraction

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sift_train.accounting import (
    active_counts,
    count_layers,
    forward_flops,
    layer_table,
    model_counts,
    profiler_flops,
    trace,
)
from sift_train.models import build_model, resnet18_cifar
from sift_train.sparse_params import mark_sparse, sparse_parameters
from spec_table import SPEC_TABLE


@pytest.mark.parametrize("family, s", list(SPEC_TABLE))
def test_official_configs_match_spec_table_at_nominal_masks(family, s):
    model = resnet18_cifar(100, family, s, "official", device="meta")
    counts = model_counts(model, (3, 32, 32), active_counts(model, s, "official"))
    assert (counts.active_params, counts.flops, counts.profiler_flops) == SPEC_TABLE[(family, s)][3:]


def test_conv_linear_bn_relu_closed_forms():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(128, 10))
    rows = {r.kind: r for r in layer_table(model, (3, 8, 8))}
    conv, bn, relu, fc = rows["Conv2d"], rows["BatchNorm"], rows["ReLU"], rows["Linear"]
    assert conv.positions == 16 and conv.flops == 2 * 216 * 16 + 8 * 16  # 2 MAC + bias adds
    assert conv.profiler_flops == 216 * 16 + 215 * 16 + 8 * 16  # (numel - 1) adds per position
    assert fc.flops == 2 * 1280 + 10 and fc.profiler_flops == 1280 + 127 * 10 + 10
    assert bn.flops == 0 and bn.profiler_flops == 2 * 8 * 15 + 2 * 128 + 3 * 128 + 8
    assert relu.profiler_flops == 128 and relu.params == 0


@pytest.mark.parametrize("family", ["dense", "wide", "parallel", "factorized", "doped"])
def test_dense_flops_agree_with_torch_flop_counter(family):
    model = build_model("resnet18", in_shape=(3, 32, 32), num_classes=100, family=family,
                        sparsity=0.75, device="meta").eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32, device="meta"))
    # torch counts 2 x MAC of conv/linear without bias adds; the fc adds 100
    assert forward_flops(model, (3, 32, 32)) == counter.get_total_flops() + 100


def test_masked_flops_scale_each_layer_by_its_density():
    torch.manual_seed(0)
    model = build_model("cnn", in_shape=(1, 28, 28), num_classes=10, family="parallel", sparsity=0.5)
    active = {}
    for name, p in sparse_parameters(model).items():
        mask = torch.rand_like(p) < 0.3
        with torch.no_grad():
            p.mul_(mask)
        active[name] = int(mask.sum())
    expected = Fraction(10)  # fc bias adds
    for owner, flops in _torch_flops_per_module(model, (1, 28, 28)).items():
        name, weight = f"{owner}.weight", dict(model.named_modules())[owner].weight
        expected += flops * Fraction(active.get(name, weight.numel()), weight.numel())
    assert forward_flops(model, (1, 28, 28), active) == expected


def _torch_flops_per_module(model, in_shape):
    """torch's FLOP count of each Conv2d/Linear, each run alone on the input it sees in the model."""
    inputs, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: inputs.update({name: (m, i[0])})))
    model.eval()(torch.zeros(1, *in_shape))
    for h in hooks:
        h.remove()
    out = {}
    for name, (module, x) in inputs.items():
        with FlopCounterMode(display=False) as counter:
            module(x)
        out[name] = counter.get_total_flops()
    return out


def test_profiler_truncates_a_sparse_weights_adds_and_mults_separately():
    # spec §3.1 (PROF:394-454): int(adds*d) + int(mults*d); at d = 0.47 the two fractions add up past 1
    conv = mark_sparse(nn.Conv2d(3, 8, 3, padding=1, bias=False))  # 216 weights, 16 positions
    (row,) = count_layers(trace(nn.Sequential(conv), (3, 4, 4)), density={"0.weight": 0.47})
    assert row.profiler_flops == int(215 * 16 * 0.47) + int(216 * 16 * 0.47) == 3240


def test_active_counts_floor_and_uniform_sparsity_equals_dict():
    model = build_model("mlp", in_shape=(1, 8, 8), num_classes=10, family="dense", sparsity=0.3,
                        device="meta")
    sparse = sparse_parameters(model)
    active = active_counts(model, 0.3)
    assert active == {n: 7 * p.numel() // 10 for n, p in sparse.items()}
    assert active_counts(model, {n: 0.3 for n in sparse}) == active
    dense_counts = {n: p.numel() for n, p in sparse.items()}
    assert profiler_flops(model, (1, 8, 8), active_counts(model, 0.0)) == profiler_flops(model, (1, 8, 8))
    assert forward_flops(model, (1, 8, 8), dense_counts) == forward_flops(model, (1, 8, 8))


def test_totals_split_total_sparse_active():
    model = build_model("cnn", in_shape=(1, 8, 8), num_classes=10, family="doped", sparsity=0.5,
                        device="meta")
    sparse = sparse_parameters(model)
    counts = model_counts(model, (1, 8, 8), {n: 7 for n in sparse})
    total = sum(p.numel() for p in model.parameters())
    assert counts.total_params == total
    assert counts.sparse_params == sum(p.numel() for p in sparse.values())
    assert counts.active_params == total - counts.sparse_params + 7 * len(sparse)


def test_bad_active_counts_rejected():
    model = build_model("mlp", in_shape=(1, 8, 8), num_classes=10, family="dense", sparsity=0.5,
                        device="meta")
    with pytest.raises(ValueError, match="fc_in.weight: not a sparse tensor"):
        forward_flops(model, (1, 8, 8), {"fc_in.weight": 3})
    with pytest.raises(ValueError, match=r"hidden\.0\.weight: active count 99999999 outside"):
        forward_flops(model, (1, 8, 8), {"hidden.0.weight": 99_999_999})
    with pytest.raises(ValueError, match=r"hidden\.0\.weight: sparsity must be in \[0, 1\)"):
        active_counts(model, 1.5)


def test_module_without_flop_rule_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with pytest.raises(ValueError, match="1: LayerNorm holds parameters but has no FLOP rule"):
        forward_flops(model, (4,))


def test_sparse_tensor_outside_conv_linear_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Bilinear(4, 4, 2))
    mark_sparse(model[1])
    with pytest.raises(ValueError, match="1: Bilinear holds parameters"):
        forward_flops(model, (4,))


def test_module_reused_in_forward_rejected():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, shared)
    with pytest.raises(ValueError, match="0: module runs more than once"):
        forward_flops(model, (4,))


def test_counting_keeps_each_module_mode():
    model = build_model("cnn", in_shape=(1, 8, 8), num_classes=10, family="factorized", sparsity=0.5)
    model.train()
    model.units[0].eval()
    forward_flops(model, (1, 8, 8))
    assert model.training and not model.units[0].training and model.units[1].training
