"""Mask buffers, their enforcement, initial masks and sparsity distributions."""
import math

import pytest
import torch
from torch import nn

from sift_train import mark_sparse
from sift_train.counts import active_count
from sift_train.distributions import erk, uniform
from sift_train.masking import Masking, random_masks, read_masks


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = mark_sparse(nn.Conv2d(2, 8, 3, padding=1))
        self.bn = nn.BatchNorm2d(8)
        self.fc = mark_sparse(nn.Linear(8 * 16, 10))

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _masked_net(seed=0, sparsity=0.7):
    torch.manual_seed(seed)
    net = Net()
    shapes = {"conv.weight": (8, 2, 3, 3), "fc.weight": (10, 128)}
    masks = random_masks(shapes, {n: sparsity for n in shapes}, torch.Generator().manual_seed(seed))
    return net, Masking(net, masks)


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, nesterov=True, weight_decay=5e-2),
    lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=1e-2),
    lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=1e-1, amsgrad=True),
], ids=["sgd-nesterov-wd", "adam-l2", "adamw-amsgrad"])
def test_inactive_weights_and_optimizer_state_stay_exactly_zero(make_opt):
    net, masking = _masked_net()
    opt = make_opt(net.parameters())
    x, y = torch.randn(16, 2, 4, 4), torch.randint(0, 10, (16,))
    for _ in range(25):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    for name, p in masking.params.items():
        off = ~masking.masks[name]
        assert p[off].abs().max() == 0, name
        assert p[~off].abs().min() > 0, f"{name}: active weights should train"
        states = [v for v in opt.state[p].values() if torch.is_tensor(v) and v.shape == p.shape]
        assert states and all(v[off].abs().max() == 0 for v in states)


def test_load_state_dict_remasks_weights_with_the_loaded_masks():
    net, masking = _masked_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["fc.weight"].fill_(1.0)  # e.g. weights from a dense checkpoint
    state["fc.weight_mask"] = ~state["fc.weight_mask"]
    net.load_state_dict(state)
    assert torch.equal(net.fc.weight != 0, state["fc.weight_mask"])
    assert torch.equal(masking.masks["fc.weight"], state["fc.weight_mask"])


def test_gradients_are_masked_before_clipping_sees_them():
    net, masking = _masked_net()
    dense = Net()
    dense.load_state_dict({k: v for k, v in net.state_dict().items() if not k.endswith("_mask")})
    x, y = torch.randn(16, 2, 4, 4), torch.randint(0, 10, (16,))
    for m in (net, dense):
        nn.functional.cross_entropy(m(x), y).backward()
    expected = {n: p.grad for n, p in dense.named_parameters()}
    for name, mask in masking.masks.items():
        expected[name] = expected[name] * mask
    norm = nn.utils.clip_grad_norm_(net.parameters(), max_norm=1e9)
    assert torch.isclose(norm, torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(g) for g in expected.values()])))
    for name, p in masking.params.items():
        assert torch.equal(p.grad, expected[name])


def test_set_masks_zeroes_dropped_weights_and_their_momentum():
    net, masking = _masked_net(sparsity=0.5)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 2, 4, 4), torch.randint(0, 10, (16,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    new = {n: m.clone() for n, m in masking.masks.items()}
    dropped = new["fc.weight"] & (torch.rand(new["fc.weight"].shape) < 0.5)
    new["fc.weight"] &= ~dropped
    masking.set_masks(new, opt)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    assert dropped.any() and net.fc.weight[dropped].abs().max() == 0
    assert opt.state[net.fc.weight]["momentum_buffer"][dropped].abs().max() == 0


def test_remove_leaves_a_plain_model_without_masks_or_hooks():
    net, masking = _masked_net()
    off = ~masking.masks["fc.weight"]
    masking.remove()
    assert not any(k.endswith("_mask") for k in net.state_dict())
    nn.functional.cross_entropy(net(torch.randn(4, 2, 4, 4)), torch.randint(0, 10, (4,))).backward()
    assert net.fc.weight.grad[off].abs().sum() > 0  # no gradient hook any more
    state = {k: torch.ones_like(v) for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert torch.equal(net.fc.weight, torch.ones_like(net.fc.weight))  # no load hook any more


def test_masks_are_plain_buffers_in_state_dict_and_weights_keep_their_names():
    net, masking = _masked_net()
    sd = net.state_dict()
    assert sd["conv.weight_mask"].dtype == torch.bool and "conv.weight" in sd
    assert isinstance(net.conv.weight, nn.Parameter)
    assert torch.equal(read_masks(net)["fc.weight"], net.fc.weight_mask)


def test_mask_shape_mismatch_names_the_tensor():
    net = Net()
    masks = {"conv.weight": torch.ones(8, 2, 3, 3, dtype=torch.bool), "fc.weight": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="fc.weight: mask shape"):
        Masking(net, masks)


def test_exact_count_init_has_floor_count_and_bernoulli_init_is_random_count():
    shapes = {"a": (64, 64, 3, 3)}
    exact = random_masks(shapes, {"a": 0.9}, torch.Generator().manual_seed(0), exact=True)
    assert int(exact["a"].sum()) == math.floor(0.1 * 64 * 64 * 9) == active_count(64 * 64 * 9, 0.9)
    counts = {int(random_masks(shapes, {"a": 0.9}, torch.Generator().manual_seed(s), exact=False)["a"].sum())
              for s in range(5)}
    assert len(counts) > 1
    assert all(abs(c - 3686.4) < 5 * math.sqrt(36864 * 0.09) for c in counts)


def test_uniform_gives_every_tensor_the_same_sparsity():
    assert uniform({"a": (3, 3), "b": (4, 5, 1, 1)}, 0.8) == {"a": 0.8, "b": 0.8}


def test_erk_matches_closed_form_when_no_layer_is_capped():
    shapes = {"a": (64, 32, 3, 3), "b": (128, 64, 3, 3)}
    s = 0.9
    raw = {n: sum(sh) / math.prod(sh) for n, sh in shapes.items()}
    total = sum(math.prod(sh) for sh in shapes.values())
    eps = (1 - s) * total / sum(raw[n] * math.prod(sh) for n, sh in shapes.items())
    got = erk(shapes, s)
    for n in shapes:
        assert got[n] == pytest.approx(1 - eps * raw[n])


def test_erk_capacity_loop_makes_overfull_layers_dense_and_keeps_the_budget():
    # a tiny 1x1 conv would get density > 1 (sparse_learning#20's "prob 6.63"); it must become dense
    shapes = {"tiny": (4, 2, 1, 1), "mid": (16, 8, 3, 3), "big": (256, 256, 3, 3)}
    s = 0.5
    got = erk(shapes, s)
    # two passes of the loop: first "tiny", then "mid" exceed density 1
    assert got["tiny"] == 0.0 and got["mid"] == 0.0
    total = sum(math.prod(sh) for sh in shapes.values())
    assert 1 - got["big"] == pytest.approx(((1 - s) * total - 8 - 16 * 8 * 9) / (256 * 256 * 9))
    active = sum((1 - got[n]) * math.prod(sh) for n, sh in shapes.items())
    assert active == pytest.approx((1 - s) * total)
    # without the loop the raw ERK density of "tiny" would exceed 1
    raw = {n: sum(sh) / math.prod(sh) for n, sh in shapes.items()}
    eps0 = (1 - s) * total / sum(raw[n] * math.prod(sh) for n, sh in shapes.items())
    assert eps0 * raw["tiny"] > 1
