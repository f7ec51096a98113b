"""The CUDA path (skipped without a GPU): masks, mask generator and scores on the device, channels-last
conv models, AMP with masks enforced, DDP-free single-GPU training end to end."""
import pytest
import torch

from sift_train.config import make_config
from sift_train.train import build, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CFG = dict(preset="digits", dataset="synthetic", family="wide", sparsity=0.75, epochs=2, batch_size=32,
           update_interval=2)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_masks_generator_and_updates_live_on_the_gpu(method):
    setup = build(make_config(**CFG, model="cnn", method=method), device="cuda")
    sparse = setup.sparse
    assert sparse.generator.device.type == "cuda"
    assert all(m.is_cuda and m.dtype == torch.bool for m in sparse.masking.masks.values())
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in setup.model.parameters() if p.dim() == 4)
    x = setup.data.train.x[:32].cuda().contiguous(memory_format=torch.channels_last)
    y = setup.data.train.y[:32].cuda()
    before = {n: m.clone() for n, m in sparse.masking.masks.items()}
    for _ in range(2):
        setup.optimizer.zero_grad()
        torch.nn.functional.cross_entropy(setup.model(x), y).backward()
        setup.optimizer.step()
    assert sparse.last_update_step == 2
    after = sparse.masking.masks
    assert any(not torch.equal(before[n], after[n]) for n in after)
    assert all(int(after[n].sum()) == sparse.targets[n] for n in after)
    assert all(p[~after[n]].abs().max() == 0 for n, p in sparse.masking.params.items())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_on_the_gpu_keeps_inactive_weights_zero(tmp_path, amp):
    info = train(make_config(**CFG, model="cnn", method="rigl", amp=amp), tmp_path / "r", progress=False,
                 device="cuda")
    assert info["step"] == 16 and info["test_acc"] is not None
    state = torch.load(tmp_path / "r" / "checkpoint" / "last.pt", weights_only=True, map_location="cpu")
    masks = {k[: -len("_mask")]: v for k, v in state["model"].items() if k.endswith("_mask")}
    assert masks and all(state["model"][k][~m].abs().max() == 0 for k, m in masks.items())


def test_cuda_checkpoint_cannot_resume_on_cpu_with_a_clear_error(tmp_path):
    cfg = make_config(**CFG, model="mlp", method="set", epochs=2)
    train(cfg, tmp_path / "r", progress=False, device="cuda", stop_after_epoch=1)
    with pytest.raises(ValueError, match="not a cpu generator"):
        train(cfg, tmp_path / "r", resume=True, progress=False, device="cpu")
