"""Mixed precision, gradient accumulation and devices on CPU: an fp16 step skipped by the GradScaler
does not advance the mask schedule; bf16 training keeps inactive weights at zero; accumulation gives the
global-batch gradient; the batch split is validated."""
import pytest
import torch

from sift_train.config import make_config
from sift_train.devices import resolve_device, use_channels_last
from sift_train.distributed import Dist, mask_fingerprint
from sift_train.precision import Precision
from sift_train.steps import StepRunner
from sift_train.train import build, check_split, train

CFG = dict(preset="digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.75,
           epochs=2, batch_size=32, update_interval=2, method="rigl")


def _runner(setup, accumulate=1):
    return StepRunner(setup.model, setup.optimizer, setup.precision, Dist(), accumulate)


def test_skipped_fp16_step_does_not_advance_the_mask_schedule():
    setup = build(make_config(**CFG, amp="fp16"))
    sparse, runner = setup.sparse, _runner(setup)
    x, y = setup.data.train.x[:32], setup.data.train.y[:32]
    runner.step(x, y, 32)
    assert sparse.step == 1  # the next applied step (t = 2) is a mask update
    masks = {n: m.clone() for n, m in sparse.masking.masks.items()}
    weights = {n: p.detach().clone() for n, p in sparse.masking.params.items()}
    scale = setup.precision.scaler.get_scale()
    runner.step(torch.full_like(x, float("inf")), y, 32)  # overflowing gradients: the scaler skips
    assert sparse.step == 1 and sparse.last_update_step is None
    assert setup.precision.scaler.get_scale() == scale / 2  # GradScaler backoff 0.5
    assert all(torch.equal(masks[n], m) for n, m in sparse.masking.masks.items())
    assert all(torch.equal(weights[n], p) for n, p in sparse.masking.params.items())
    runner.step(x, y, 32)
    assert sparse.step == 2 and sparse.last_update_step == 2
    assert any(not torch.equal(masks[n], m) for n, m in sparse.masking.masks.items())


def test_bf16_training_keeps_inactive_weights_zero(tmp_path):
    info = train(make_config(**CFG, amp="bf16"), tmp_path / "r", progress=False, device="cpu")
    assert info["step"] == 16
    state = torch.load(tmp_path / "r" / "checkpoint" / "last.pt", weights_only=True)["model"]
    masks = {k[: -len("_mask")]: v for k, v in state.items() if k.endswith("_mask")}
    assert masks and all(state[k][~m].abs().max() == 0 for k, m in masks.items())
    assert all(state[k].dtype == torch.float32 for k in masks)  # autocast leaves parameters in fp32


def test_autocast_runs_the_forward_in_the_chosen_dtype():
    lin = torch.nn.Linear(4, 3)
    for amp, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("off", torch.float32)):
        with Precision(amp, torch.device("cpu")).autocast():
            assert lin(torch.randn(2, 4)).dtype == dtype


def test_accumulation_gives_the_global_batch_gradient():
    """Two micro-batches of 16 accumulate the gradient of the mean loss over all 32 samples."""
    grads = []
    for accumulate in (1, 2):
        setup = build(make_config(**CFG, accumulate=accumulate))
        setup.optimizer.register_step_pre_hook(
            lambda opt, a, k: grads.append([p.grad.clone() for p in setup.model.parameters()]))
        x, y = setup.data.train.x[:32], setup.data.train.y[:32]
        _runner(setup, accumulate).step(x, y, 32)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    manual = build(make_config(**CFG))
    loss = torch.nn.functional.cross_entropy(manual.model(manual.data.train.x[:32]), manual.data.train.y[:32])
    loss.backward()  # masked during backward, as the hooks above saw them
    for a, p in zip(grads[1], manual.model.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)


def test_accumulated_run_counts_mask_updates_in_optimizer_steps(tmp_path):
    a = train(make_config(**CFG), tmp_path / "a", progress=False, device="cpu")
    b = train(make_config(**CFG, accumulate=4), tmp_path / "b", progress=False, device="cpu")
    assert a["step"] == b["step"] == 16
    sa = sorted(p.name for p in (tmp_path / "a" / "snapshots").iterdir())
    assert sa == sorted(p.name for p in (tmp_path / "b" / "snapshots").iterdir())


def test_batch_that_cannot_be_split_is_one_clear_error():
    cfg = make_config(**CFG, accumulate=8)
    check_split(cfg, 256, world_size=4)
    with pytest.raises(ValueError, match="global batch of 26 samples cannot be split over 4 process"):
        check_split(cfg, 250, world_size=4)  # 250 = 7 x 32 + 26


def test_auto_device_and_channels_last_rule():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    assert not use_channels_last(conv, torch.device("cpu"))
    assert not use_channels_last(torch.nn.Linear(2, 2), torch.device("cuda"))
    assert use_channels_last(conv, torch.device("cuda"))


def test_mask_fingerprint_tells_moved_entries_apart():
    m = torch.zeros(5, 7, dtype=torch.bool)
    m[1, 2] = m[3, 4] = True
    moved = m.clone()
    moved[3, 4], moved[3, 5] = False, True
    assert torch.equal(mask_fingerprint({"w": m}), mask_fingerprint({"w": m.clone()}))
    assert not torch.equal(mask_fingerprint({"w": m}), mask_fingerprint({"w": moved}))
    assert mask_fingerprint({"w": m})[0].tolist() == [2, 1 * 7 + 2 + 3 * 7 + 4, 9 * 16 + 25 * 32]


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_resume_is_bit_identical_with_amp_accumulation_and_cosine(tmp_path, amp):
    cfg = make_config(**{**CFG, "epochs": 3}, amp=amp, accumulate=2, lr_schedule="cosine", warmup_epochs=1)
    full = train(cfg, tmp_path / "full", progress=False, device="cpu")
    train(cfg, tmp_path / "part", progress=False, device="cpu", stop_after_epoch=1)
    assert train(cfg, tmp_path / "part", resume=True, progress=False, device="cpu") == full
    a, b = (torch.load(tmp_path / r / "checkpoint" / "last.pt", weights_only=True) for r in ("full", "part"))
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert a["precision"] == b["precision"]
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "part" / "metrics.csv").read_text()
