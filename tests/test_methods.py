"""Drop/grow criteria and exact counts of static, SET and RigL (sparse-ift.md §2.4-2.6)."""
import math

import torch
from torch import nn

from sift_train import mark_sparse
from sift_train.counts import active_count
from sift_train.masking import random_masks
from sift_train.methods import RigL, SET, Static, drop_by_magnitude, get_method, grow_top
from sift_train.schedule import UpdateSchedule
from sift_train.sparse_training import SparseTraining


def test_drop_keeps_largest_magnitudes_of_active_entries():
    w = torch.tensor([[0.5, -3.0, 0.0, 2.0], [0.1, 0.0, -0.2, 7.0]])
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1]], dtype=torch.bool)
    # 6 active, α = 0.5 -> drop int(3.0) = 3: the three smallest |w| among active: 0.1, -0.2, 0.5
    kept = drop_by_magnitude(w, mask, 0.5)
    assert kept.tolist() == [[False, True, False, True], [False, False, False, True]]


def test_drop_never_swaps_an_active_zero_for_an_inactive_position():
    w = torch.tensor([0.0, 0.0, 1.0, 0.0])
    mask = torch.tensor([True, False, True, False])
    assert drop_by_magnitude(w, mask, 0.0).tolist() == [True, False, True, False]


def test_rigl_grows_largest_dense_gradients_among_inactive():
    w = torch.tensor([1.0, -2.0, 0.3, 0.0, 0.0, 0.0])
    mask = torch.tensor([True, True, True, False, False, False])
    grad = torch.tensor([9.0, 0.0, 0.0, 0.5, -4.0, 1.0])
    # α = 1/3: drop int(1) = 1 -> 0.3 (idx 2) leaves; grow 1 by |grad| among inactive {2,3,4,5}: idx 4
    new = RigL().update_one(w, grad, mask, 1 / 3, 3, torch.Generator())
    assert new.tolist() == [True, True, False, False, True, False]


def test_rigl_may_regrow_a_just_dropped_connection():
    w = torch.tensor([1.0, 0.1, 0.0])
    mask = torch.tensor([True, True, False])
    grad = torch.tensor([0.0, 5.0, 1.0])
    new = RigL().update_one(w, grad, mask, 0.5, 2, torch.Generator())
    assert new.tolist() == [True, True, False]


def test_set_grows_only_at_positions_inactive_after_drop():
    torch.manual_seed(0)
    w = torch.randn(50)
    mask = torch.zeros(50, dtype=torch.bool)
    mask[:20] = True
    kept = drop_by_magnitude(w, mask, 0.3)
    new = SET().update_one(w, None, mask, 0.3, 20, torch.Generator().manual_seed(1))
    assert int(new.sum()) == 20 and bool((new & kept).sum() == kept.sum())


def test_grow_top_restores_exact_target_count():
    kept = torch.tensor([True, False, False, False, True])
    new = grow_top(kept, torch.tensor([5.0, 1.0, 3.0, 2.0, 9.0]), 2)
    assert new.tolist() == [True, False, True, True, True]


def test_static_method_is_not_dynamic():
    assert get_method("static").dynamic is False and isinstance(get_method("static"), Static)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = mark_sparse(nn.Conv2d(1, 6, 3, padding=1))
        self.fc1 = mark_sparse(nn.Linear(6 * 16, 40))
        self.fc2 = nn.Linear(40, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1))))


def _train(method, *, steps=60, interval=5, exact=False, seed=0, record=None):
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n in ("conv.weight", "fc1.weight")}
    sparsity = {n: 0.8 for n in shapes}
    gen = torch.Generator().manual_seed(seed)
    masks = random_masks(shapes, sparsity, gen, exact=exact)
    targets = {n: active_count(math.prod(sh), 0.8) for n, sh in shapes.items()}
    st = SparseTraining.from_parts(model, opt, masks, targets, get_method(method),
                                   UpdateSchedule(end=int(0.75 * steps), interval=interval), gen)
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 3, (32,))
    for _ in range(steps):
        before = {n: m.clone() for n, m in st.masking.masks.items()}
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if record is not None:
            record(st, before)
    return st


def test_rigl_and_set_keep_each_layer_exact_count_after_every_update():
    for method in ("rigl", "set"):
        seen = []

        def check(st, before):
            if st.last_update_step == st.step:
                seen.append(st.step)
                assert st.masking.active_counts() == st.targets

        st = _train(method, exact=False, record=check)  # Bernoulli init: the first update snaps the count
        assert st.targets == {"conv.weight": 10, "fc1.weight": 768}
        assert seen == [5, 10, 15, 20, 25, 30, 35, 40]


def test_dynamic_masks_actually_change():
    changed = []
    _train("rigl", record=lambda st, before: changed.append(
        any(not torch.equal(before[n], m) for n, m in st.masking.masks.items())))
    assert any(changed)


def test_regrown_weights_and_their_momentum_start_at_zero():
    grown_values = []

    def check(st, before):
        if st.last_update_step != st.step:
            return
        for name, mask in st.masking.masks.items():
            grown = mask & ~before[name]
            p = st.masking.params[name]
            grown_values.extend(p[grown].abs().tolist())
            grown_values.extend(st.optimizer.state[p]["momentum_buffer"][grown].abs().tolist())

    _train("rigl", record=check)
    _train("set", record=check)
    assert len(grown_values) > 100 and max(grown_values) == 0.0


def test_static_masks_never_change():
    st0 = {}

    def check(st, before):
        st0.setdefault("first", before)
        for n, m in st.masking.masks.items():
            assert torch.equal(st0["first"][n], m)

    st = _train("static", record=check)
    assert st.last_update_step is None
