"""The four Sparse-IFT transformations of one layer and their size rules (spec sparse-ift.md §1, §7.1)."""
import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from sift_train.sparse_params import sparse_parameters
from sift_train.transforms import Doped, Factorized, ParallelSum, transform
from sift_train.widths import (
    doped_rank,
    factorized_rank,
    parallel_branches,
    transformer_widths,
    wide_width,
)

FAMILIES = ["dense", "wide", "parallel", "factorized", "doped"]


def _layers():
    torch.manual_seed(0)
    return [
        (nn.Linear(12, 7), torch.randn(4, 12)),
        (nn.Conv2d(3, 5, 3, stride=2, padding=1), torch.randn(2, 3, 9, 9)),
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_s0_recovers_dense_layer_output(family):
    for layer, x in _layers():
        out = transform(layer, family, 0.0)
        assert torch.equal(out(x), layer(x))
        assert sparse_parameters(out) == {}


@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_backward_every_family(family, variant):
    for layer, x in _layers():
        out = transform(layer, family, 0.75, variant=variant, branch_act=nn.ReLU, widen_out=False,
                        widen_in=False)
        y = out(x)
        assert y.shape == layer(x).shape
        y.square().mean().backward()
        sparse = sparse_parameters(out)
        assert sparse and all(p.grad is not None for p in sparse.values())


def test_sparse_tensors_declared_per_family():
    layer = nn.Conv2d(8, 16, 3, padding=1)
    names = {fam: sorted(sparse_parameters(transform(layer, fam, 0.75))) for fam in FAMILIES}
    assert names["dense"] == names["wide"] == ["weight"]
    assert names["parallel"] == [f"branches.{i}.weight" for i in range(4)]
    assert names["factorized"] == ["U.weight", "V.weight"]
    assert names["doped"] == ["S.weight"]  # paper: dense low-rank term
    official = transform(layer, "doped", 0.75, variant="official")
    assert sorted(sparse_parameters(official)) == ["S.weight", "U.weight", "V.weight"]


def test_wide_layer_scales_both_widths_by_k_sw():
    out = transform(nn.Linear(64, 128), "wide", 0.75)
    assert (out.in_features, out.out_features) == (128, 256)
    unit = transform(nn.Conv2d(3, 64, 3), "wide", 0.75, widen_in=False, norm=nn.BatchNorm2d)
    assert (unit.conv.in_channels, unit.conv.out_channels, unit.bn.num_features) == (3, 128, 128)
    assert unit(torch.randn(2, 3, 5, 5)).shape == (2, 128, 3, 3)


def test_parallel_is_sum_of_branches_with_relu_only_in_paper_variant():
    torch.manual_seed(1)
    x = torch.randn(5, 6)
    for variant, act in [("paper", torch.relu), ("official", lambda t: t)]:
        par = transform(nn.Linear(6, 4), "parallel", 0.5, variant=variant, branch_act=nn.ReLU)
        assert isinstance(par, ParallelSum) and len(par.branches) == 2
        linears = [m for m in par.modules() if isinstance(m, nn.Linear)]
        expected = sum(act(x @ l.weight.T + l.bias) for l in linears)
        assert torch.allclose(par(x), expected, atol=1e-6)


def test_factorized_is_v_bn_relu_u():
    torch.manual_seed(2)
    fac = transform(nn.Linear(10, 6), "factorized", 0.5).eval()
    assert isinstance(fac, Factorized)
    rank = round(10 * 6 / (16 * 0.5))  # d_h = D_in D_out / ((D_in + D_out)(1 - s)) = 7.5 -> 8
    assert fac.U.weight.shape == (rank, 10) and fac.V.weight.shape == (6, rank)
    with torch.no_grad():
        fac.mid.bn.running_mean.uniform_(-1, 1)
        fac.mid.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 10)
    bn = fac.mid.bn
    h = (x @ fac.U.weight.T - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    expected = torch.relu(h) @ fac.V.weight.T + fac.V.bias
    assert torch.allclose(fac(x), expected, atol=1e-5)


def test_official_doped_is_sparse_plus_low_rank_without_nonlinearity():
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    doped = transform(conv, "doped", 0.5, variant="official")
    assert isinstance(doped, Doped) and doped.sparse_act is None
    r = math.floor(0.5 * 36 * 6 / (36 + 6))  # spec §1.0: r = s D_in D_out / (D_in + D_out)
    assert doped.U.weight.shape == (r, 4, 3, 3) and doped.V.weight.shape == (6, r, 1, 1)
    assert torch.equal(doped.S.weight, conv.weight)  # the dense layer seeds S
    x = torch.randn(2, 4, 5, 5)
    folded = torch.einsum("or,rikl->oikl", doped.V.weight[:, :, 0, 0], doped.U.weight)
    expected = nn.functional.conv2d(x, conv.weight + folded, padding=1)
    assert torch.allclose(doped(x), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_paper_doped_forward_is_low_rank_plus_bn_relu_of_the_sparse_path(kind):
    """Paper §2.3 / App. C.2: ψ = Vᵀ(Uᵀz) + σ(θ_sdᵀ z), σ = BN + ReLU (written out by hand here)."""
    torch.manual_seed(4)
    layer = nn.Linear(8, 5) if kind == "linear" else nn.Conv1d(3, 5, 3, padding=1, bias=False)
    doped = transform(layer, "doped", 0.5, variant="paper")
    bn = doped.sparse_act.bn
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    doped.eval()
    if kind == "linear":
        z = torch.randn(4, 8)
        sparse = z @ doped.S.weight.T + doped.S.bias
        low = (z @ doped.U.weight.T) @ doped.V.weight.T
        shape = (1, -1)
    else:
        z = torch.randn(4, 3, 7)
        sparse = nn.functional.conv1d(z, doped.S.weight, padding=1)
        low = torch.einsum("or,brl->bol", doped.V.weight[:, :, 0],
                           nn.functional.conv1d(z, doped.U.weight, padding=1))
        shape = (1, -1, 1)
    norm = (sparse - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    expected = low + torch.relu(norm * bn.weight.view(shape) + bn.bias.view(shape))
    assert torch.allclose(doped(z), expected, atol=1e-5)


# spec §1.4 / §1.5 tables, (conv1, conv2) ranks of blocks b1 (64->64), b3 (64->128), b8 (512->512)
@pytest.mark.parametrize("s, fac, dop", [
    (0.5, (116, 210, 231, 922), (28, 52, 57, 230)),
    (0.75, (231, 419, 461, 1844), (43, 78, 86, 345)),
    (0.9, (577, 1048, 1153, 4609), (51, 94, 103, 414)),
])
def test_official_ranks_match_released_code(s, fac, dop):
    pairs = [(64, 64), (64, 128), (128, 128), (512, 512)]
    assert tuple(factorized_rank(9 * a, b, s, "official") for a, b in pairs) == fac
    assert tuple(doped_rank(9 * a, b, s, "official") for a, b in pairs) == dop


def test_paper_factorized_rank_is_exact_not_float_ceil():
    # 9*64*64 / (0.1 * (9*64 + 64)) = 576 exactly; the released code's float ceil gives 577
    assert factorized_rank(9 * 64, 64, 0.9, "paper") == 576


@pytest.mark.parametrize("d_in, d_out, s", [(9 * 64, 128, 0.5), (9 * 64, 64, 0.75), (256, 256, 0.9), (30, 7, 0.6)])
def test_paper_factorized_rank_is_the_nearest_integer_of_the_exact_value(d_in, d_out, s):
    exact = Fraction(d_in * d_out, d_in + d_out) / (1 - Fraction(str(s)))
    assert factorized_rank(d_in, d_out, s, "paper") == math.floor(exact + Fraction(1, 2))


def test_width_and_branch_rules():
    assert [wide_width(64, s, "official") for s in (0.5, 0.75, 0.9)] == [90, 128, 202]  # spec §1.2
    assert [wide_width(64, s, "paper") for s in (0.5, 0.75, 0.9)] == [91, 128, 202]
    assert [parallel_branches(s, v) for v in ("paper", "official") for s in (0.5, 0.75, 0.9)] == [
        2, 4, 10, 2, 4, 10]


def test_transformer_widths_reproduce_gpt3_small_table():
    # paper Table 14 (spec §7.1): GPT-3 Small d_model 768, 12 heads, d_ff 3072
    assert transformer_widths(768, 12, 3072, 0.0) == (768, 3072)
    assert transformer_widths(768, 12, 3072, 0.5) == (1092, 4344)
    assert transformer_widths(768, 12, 3072, 0.75) == (1536, 6144)


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.5, float("nan"), "half"])
def test_sparsity_outside_unit_interval_rejected(s):
    with pytest.raises(ValueError, match=r"blocks\.2\.conv1: sparsity"):
        transform(nn.Linear(4, 4), "wide", s, where="blocks.2.conv1")


def test_unknown_family_rejected():
    with pytest.raises(ValueError, match="unknown family 'deep'"):
        transform(nn.Linear(4, 4), "deep", 0.5)


@pytest.mark.parametrize("layer", [nn.Conv3d(3, 4, 3), nn.Conv2d(4, 4, 3, groups=4), nn.LSTM(3, 3)])
def test_unsupported_layer_error_names_the_layer(layer):
    with pytest.raises(ValueError, match=r"features\.3:"):
        transform(layer, "parallel", 0.5, where="features.3")
