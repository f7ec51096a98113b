"""Model builders: the released code's ResNet-18 configurations exactly, and small models (spec §1, §5)."""
import math

import pytest
import torch

from sift_train.models import build_model, cnn, mlp, resnet18_cifar
from sift_train.sparse_params import sparse_parameters
from sift_train.transforms import ParallelSum
from spec_table import SPEC_TABLE

FAMILIES = ["dense", "wide", "parallel", "factorized", "doped"]


@pytest.mark.parametrize("family, s", list(SPEC_TABLE))
def test_official_param_counts_match_spec_table(family, s):
    model = resnet18_cifar(100, family, s, "official", device="meta")
    sparse = sparse_parameters(model)
    got = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in sparse.values()),
           len(sparse))
    assert got == SPEC_TABLE[(family, s)][:3]


def test_dense_family_with_sparsity_masks_the_dense_masked_set():
    # spec §5: "Dense masked params if it were masked" = 11,157,504 (all block + shortcut convs)
    sparse = sparse_parameters(resnet18_cifar(100, "dense", 0.9, device="meta"))
    assert sum(p.numel() for p in sparse.values()) == 11_157_504


def test_doped_paper_variant_keeps_low_rank_dense():
    sparse = sparse_parameters(resnet18_cifar(100, "doped", 0.5, "paper", device="meta"))
    assert len(sparse) == 19 and not any(".U." in n or ".V." in n for n in sparse)


@pytest.mark.parametrize("family", FAMILIES)
def test_stem_and_classifier_dense_shortcuts_sparse(family):
    names = list(sparse_parameters(resnet18_cifar(100, family, 0.75, device="meta")))
    assert not any(n.startswith(("conv_stem", "fc", "bn")) for n in names)
    assert sum(n.startswith("blocks.") and ".shortcut.conv." in n for n in names) == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_sparsity_is_the_dense_model(family):
    for name, shape in [("resnet18", (3, 32, 32)), ("mlp", (1, 8, 8)), ("cnn", (1, 28, 28))]:
        model = build_model(name, in_shape=shape, num_classes=10, family=family, device="meta")
        dense = build_model(name, in_shape=shape, num_classes=10, device="meta")
        assert sparse_parameters(model) == {}
        assert [p.shape for p in model.parameters()] == [p.shape for p in dense.parameters()]


def test_small_models_first_and_last_layers_dense():
    for family in FAMILIES:
        m = mlp((1, 8, 8), 10, family, 0.5, device="meta")
        names = list(sparse_parameters(m))
        assert names and all(n.startswith("hidden.") for n in names)
        c = cnn((1, 8, 8), 10, family, 0.5, device="meta")
        names = list(sparse_parameters(c))
        assert names and all(n.startswith("units.") for n in names)


@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("family", FAMILIES)
def test_small_models_forward_backward_on_cpu(family, variant):
    torch.manual_seed(0)
    for name, shape in [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (1, 28, 28)), ("mlp", (1, 40)),
                        ("cnn1d", (1, 40))]:
        model = build_model(name, in_shape=shape, num_classes=10, family=family, sparsity=0.75,
                            variant=variant)
        out = model(torch.randn(4, *shape))
        assert out.shape == (4, 10)
        torch.nn.functional.cross_entropy(out, torch.arange(4)).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in sparse_parameters(model).values())


@pytest.mark.parametrize("family", FAMILIES)
def test_resnet18_forward_backward_on_cpu(family):
    torch.manual_seed(0)
    model = resnet18_cifar(10, family, 0.5, in_channels=1)
    out = model(torch.randn(2, 1, 8, 8))
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    assert out.shape == (2, 10)
    assert all(p.grad is not None for p in sparse_parameters(model).values())


def _unit_bns(unit):
    """The BN of a transformed unit; one per branch for Sparse Parallel."""
    return [b.bn for b in unit.branches] if isinstance(unit, ParallelSum) else [unit.bn]


def _last_bn_weights(model):
    return [bn.weight for block in model.blocks for bn in _unit_bns(block.conv2)]


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_init_residual_block_only_in_official_all_in_paper(family):
    for variant in ("official", "paper"):
        model = resnet18_cifar(10, family, 0.5, variant, in_channels=1)
        zeroed = all(bool((w == 0).all()) for w in _last_bn_weights(model))
        expected = variant == "paper" or family in ("dense", "wide")  # R18:786-789, spec §6.1
        assert zeroed == expected
        assert bool((model.blocks[0].conv1.bn.weight == 1).all()) if family != "parallel" else True


@pytest.mark.parametrize("family", FAMILIES)
def test_first_unit_bn_gamma_is_one_in_every_block_and_parallel_branch(family):
    # spec §1.7: BN γ = 1; only a block's last BN may be zero-initialised (Parallel: every branch's BN)
    for variant in ("official", "paper"):
        model = resnet18_cifar(10, family, 0.5, variant, in_channels=1)
        for block in model.blocks:
            bns = _unit_bns(block.conv1)
            assert bns and all(bool((bn.weight == 1).all()) for bn in bns)


def test_convs_kaiming_normal_fan_out():
    torch.manual_seed(0)
    model = resnet18_cifar(10, "dense", 0.0)
    w = model.blocks[7].conv2.conv.weight  # 512 x 512 x 3 x 3
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.01)  # spec §1.7


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", in_shape=(3, 32, 32), num_classes=10)


def test_bad_family_and_sparsity_rejected_by_builders():
    with pytest.raises(ValueError, match="unknown family"):
        build_model("cnn", in_shape=(1, 8, 8), num_classes=10, family="sparse_wide", sparsity=0.5)
    with pytest.raises(ValueError, match=r"resnet18: sparsity must be in \[0, 1\)"):
        build_model("resnet18", in_shape=(3, 32, 32), num_classes=10, family="wide", sparsity=1.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_cnn1d_is_conv1d_throughout_and_iso_flop_in_every_family(family):
    from sift_train.isoflop import plan_masks

    model = build_model("cnn1d", in_shape=(1, 40), num_classes=10, family=family, sparsity=0.9)
    sparse = sparse_parameters(model)
    assert sparse and all(p.dim() == 3 for p in sparse.values())  # (c_out, c_in, k)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not convs
    if family != "dense":
        plan = plan_masks("cnn1d", in_shape=(1, 40), num_classes=10, family=family, sparsity=0.9)
        assert plan.rel_error < 1e-2


def test_cnn1d_dense_flops_by_hand():
    from sift_train.accounting import forward_flops

    model = build_model("cnn1d", in_shape=(1, 40), num_classes=10, device="meta")
    w = 16  # stem 1->w k5 on 40 positions; units w->2w k3 s2 (20), 2w->2w (20), 2w->4w s2 (10); fc
    macs = 1 * 5 * w * 40 + w * 3 * 2 * w * 20 + 2 * w * 3 * 2 * w * 20 + 2 * w * 3 * 4 * w * 10 + 4 * w * 10 * 10
    assert forward_flops(model, (1, 40)) == 2 * macs + 10  # + the classifier bias adds


def test_image_models_reject_1d_inputs_and_cnn1d_rejects_images():
    with pytest.raises(ValueError, match="cnn1d: needs 1-D inputs"):
        build_model("cnn1d", in_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match="cnn: needs image inputs"):
        build_model("cnn", in_shape=(1, 40), num_classes=10)


@pytest.mark.parametrize("s, paper, official", [
    (0.5, [91, 181, 362, 724], [90, 180, 360, 720]),
    (0.75, [128, 256, 512, 1024], [128, 256, 512, 1024]),
    (0.9, [202, 405, 810, 1619], [202, 404, 808, 1616]),  # spec §1.2: 202/404/808/1616 (released code)
])
def test_paper_sparse_wide_rounds_every_layer_width_once_official_multiplies_the_base(s, paper, official):
    assert paper == [round(w * math.sqrt(1 / (1 - s))) for w in (64, 128, 256, 512)]
    for variant, widths in (("paper", paper), ("official", official)):
        model = resnet18_cifar(100, "wide", s, variant, device="meta")
        got = [model.conv_stem.out_channels] + [model.blocks[i].conv2.conv.out_channels for i in (1, 3, 5, 7)]
        assert got == [widths[0]] + widths and model.fc.in_features == widths[-1], variant


@pytest.mark.parametrize("name, shape", [("cnn", (1, 8, 8)), ("cnn1d", (1, 40))])
def test_small_cnn_parallel_paper_normalises_the_branch_sum(name, shape):
    model = build_model(name, in_shape=shape, num_classes=10, family="parallel", sparsity=0.9)
    unit = model.units[0]
    assert isinstance(unit.sum, ParallelSum) and len(unit.sum.branches) == 10
    x = torch.randn(16, *shape)
    h = torch.relu(model.stem(x))
    raw, out = unit.sum(h), unit(h)
    dims = [0, 2, 3] if name == "cnn" else [0, 2]
    assert raw.mean(dims).min() > 0  # a sum of 10 ReLU outputs: every channel mean positive
    assert out.mean(dims).abs().max() < 1e-4 and (out.var(dims, unbiased=False) - 1).abs().max() < 1e-2
    official = build_model(name, in_shape=shape, num_classes=10, family="parallel", sparsity=0.9,
                           variant="official")
    assert isinstance(official.units[0], ParallelSum) or isinstance(official.units[0][0], ParallelSum)
