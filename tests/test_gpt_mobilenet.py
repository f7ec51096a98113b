"""Paper models built on sparse_ift: GPT-style decoder (Tables 13-14) and MobileNetV2 (Table 9)."""
import warnings

import pytest
import torch
from torch import nn

from sift_train import count_flops, mark_sparse, sparse_ift
from sift_train.flops import masked_weights
from sift_train.models import gpt, mobilenet_v2
from sift_train.sparse_ift import iso_flop_plan
from sift_train.widths import wide_multiplier


def test_gpt3_small_has_125m_parameters():
    m = gpt("gpt3-small", device="meta")
    V, T, L, d, f = 50257, 2048, 12, 768, 3072
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    assert sum(p.numel() for p in m.parameters()) == V * d + T * d + L * per_layer + 2 * d
    assert round(sum(p.numel() for p in m.parameters()) / 1e6) == 125  # paper Table 13


@pytest.mark.slow
@pytest.mark.parametrize("s, d_model, d_ff", [(0.5, 1092, 4344), (0.75, 1536, 6144)])
def test_sparse_wide_gpt3_small_reproduces_table_14_and_is_iso_flop(s, d_model, d_ff):
    ids = torch.zeros(1, 64, dtype=torch.long, device="meta")
    model = sparse_ift(lambda k: gpt("gpt3-small", k, device="meta"), "wide", s, ids, layers=["blocks.*"])
    block = model.blocks[0]
    assert model.wte.embedding_dim == d_model and block.mlp.fc.out_features == d_ff
    assert block.attn.q.out_features == 12 * 64 and len(model.blocks) == 12  # heads x head size kept
    assert block.mlp.fc.weight_mask.shape == (d_ff, d_model)
    # the plan sparse_ift used: FLOPs of the wide model equal the dense model's
    wide = gpt("gpt3-small", wide_multiplier(s), device="meta")
    for name, mod in wide.named_modules():
        if name.startswith("blocks.") and isinstance(mod, nn.Linear):
            mark_sparse(mod)
    plan = iso_flop_plan(wide, (ids,), count_flops(gpt("gpt3-small", device="meta"), ids), family="wide",
                         sparsity=s)
    assert plan.rel_error <= 1e-6 and plan.mask_sparsity > s  # the dense embeddings/head widen too


@pytest.mark.parametrize("family", ["wide", "parallel", "factorized", "doped"])
def test_tiny_gpt_every_family_trains_at_dense_flops(family):
    torch.manual_seed(0)
    ids = torch.randint(0, 256, (2, 32))
    dense = gpt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sparse_ift((lambda k: gpt(width_multiplier=k)) if family == "wide" else dense, family, 0.75, ids)
    assert abs(count_flops(model, ids) / count_flops(dense, ids) - 1) <= 1e-6
    model.train()
    logits = model(ids)
    nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert all(torch.equal(model.get_parameter(n) != 0, m) for n, m in masked_weights(model).items())


def test_mobilenet_v2_matches_torchvision_size_and_keeps_depthwise_dense():
    assert sum(p.numel() for p in mobilenet_v2().parameters()) == 3_504_872  # torchvision mobilenet_v2
    x = torch.randn(2, 3, 32, 32)
    dense = mobilenet_v2(10, small_input=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sparse_ift(dense, "parallel", 0.5, x)
    assert any("depthwise" in str(w.message) for w in caught)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and not any(hasattr(m, "weight_mask") for m in depthwise)
    assert abs(count_flops(model, x) / count_flops(dense, x) - 1) <= 1e-6
    model.train()
    model(x).sum().backward()
