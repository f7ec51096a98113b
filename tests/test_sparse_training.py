"""SparseTraining in a hand-written loop: AMP + GradScaler, accumulation, clipping, skipped steps."""
import pytest
import torch
from torch import nn

from sift_train import SparseTraining, mark_sparse
from sift_train.methods import drop_by_magnitude, grow_top


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(32, 32)
        self.hidden = mark_sparse(nn.Linear(32, 32))
        self.conv = mark_sparse(nn.Conv1d(4, 8, 3, padding=1))
        self.out = nn.Linear(32 + 8 * 8, 5)

    def forward(self, x):
        h = torch.relu(self.hidden(torch.relu(self.inp(x))))
        c = torch.relu(self.conv(x[:, :32].reshape(-1, 4, 8)))
        return self.out(torch.cat([h, c.flatten(1)], 1))


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 32, generator=g)
    return x, torch.randint(0, 5, (64,), generator=g)


def test_rigl_with_amp_gradscaler_accumulation_and_clipping_keeps_inactive_weights_zero():
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    st = SparseTraining(model, opt, method="rigl", sparsity=0.8, distribution="erk", total_steps=40,
                        update_every=3, drop_fraction=0.3)
    counts = {n: int(m.sum()) for n, m in st.masks.items()}
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    x, y = _batches()
    accum, updates, norms = 2, 0, []
    for step in range(12):
        opt.zero_grad()
        for micro in range(accum):
            xb, yb = x[micro::accum], y[micro::accum]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(xb), yb) / accum
            scaler.scale(loss).backward()
        scaler.unscale_(opt)
        for name, p in st.masking.params.items():  # clipping sees masked gradients only
            assert p.grad[~st.masks[name]].abs().max() == 0
        norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        before = {n: m.clone() for n, m in st.masks.items()}
        scaler.step(opt)
        scaler.update()
        updates += any(not torch.equal(before[n], m) for n, m in st.masks.items())
        for name, p in st.masking.params.items():
            assert p[~st.masks[name]].abs().max() == 0, f"step {step}: {name} has live inactive weights"
            assert int(st.masks[name].sum()) == counts[name]
    assert st.step == 12 and updates >= 3 and all(n > 0 for n in norms)


@pytest.mark.parametrize("fused", [False, True], ids=["step-not-called", "fused-step-gets-found-inf"])
def test_a_step_skipped_by_gradscaler_does_not_advance_the_schedule(fused):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.1, fused=fused)
    st = SparseTraining(model, opt, method="rigl", sparsity=0.8, total_steps=100, update_every=2)
    scaler = torch.amp.GradScaler("cpu")
    x, y = _batches()
    for poison in (False, True, False):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) * (float("inf") if poison else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert st.step == 2 and st.last_update_step == 2


def test_rigl_grows_by_the_dense_gradient_summed_over_micro_batches():
    torch.manual_seed(0)
    model, ref = Net(), Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    st = SparseTraining(model, opt, method="rigl", sparsity=0.7, distribution="uniform", total_steps=100,
                        update_every=1, drop_fraction=0.5, anneal="constant")
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith("_mask")})
    old = {n: m.clone() for n, m in st.masks.items()}
    x, y = _batches()
    opt.zero_grad()
    for m in (model, ref):
        for half in (slice(0, 32), slice(32, 64)):
            nn.functional.cross_entropy(m(x[half]), y[half]).backward()
    dense = {n: p.grad.clone() for n, p in ref.named_parameters()}
    opt.step()
    for name, p in st.masking.params.items():
        kept = drop_by_magnitude(p.detach(), old[name], 0.5)
        expected = grow_top(kept, dense[name].abs(), int(old[name].sum()) - int(kept.sum()))
        assert torch.equal(st.masks[name], expected), name


def test_state_dict_round_trip_and_remove():
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    st = SparseTraining(model, opt, method="set", sparsity=0.5, total_steps=10, update_every=2, seed=3)
    x, y = _batches()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    state = st.state_dict()
    model2 = Net()
    model2.load_state_dict(model.state_dict(), strict=False)
    st2 = SparseTraining(model2, torch.optim.SGD(model2.parameters(), lr=0.1), method="set", sparsity=0.5,
                         total_steps=10, update_every=2)
    model2.load_state_dict(model.state_dict())
    st2.load_state_dict(state)
    assert st2.step == 3 and st2.last_update_step == 2
    assert torch.equal(st2.generator.get_state(), st.generator.get_state())
    st.remove()
    assert not any(k.endswith("_mask") for k in model.state_dict())
    opt.step()
    assert st.step == 3  # the optimizer hook is gone


def test_errors_name_the_problem():
    plain = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="declares no sparse tensors"):
        SparseTraining(plain, torch.optim.SGD(plain.parameters(), lr=0.1), sparsity=0.5, total_steps=1)
    model = Net()
    with pytest.raises(ValueError, match="needs total_steps"):
        SparseTraining(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.5)
    with pytest.raises(ValueError, match="no <param>_mask buffers"):
        SparseTraining(model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=5)
