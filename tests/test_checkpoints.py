"""Checkpoints of other tools: prune, torch.ao.pruning, plain zeros, sift masks, safetensors, transposed."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.ao.pruning import WeightNormSparsifier
from torch.nn.utils import prune

from sift_graph import layers_from_state_dict, read_layers
from sift_graph.__main__ import main


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Conv1d(2, 3, 3))


def _masks(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {f"{i}.weight": torch.rand(m.weight.shape, generator=g) < 0.4
            for i, m in enumerate(net) if hasattr(m, "weight")}


def _check(layers, masks, net_weights):
    assert set(layers) == set(masks)
    for name, mask in masks.items():
        m, w = layers[name]
        expect = mask.numpy()
        if expect.ndim == 3:
            expect = expect[..., None]  # Conv1d read as (out, in, k, 1)
        assert m.dtype == bool and np.array_equal(m, expect), name
        assert np.allclose(w, (net_weights[name] * mask).numpy().reshape(w.shape)), name


def test_torch_nn_utils_prune_orig_and_mask():
    net = _net()
    masks = _masks(net)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    for i in (0, 2, 3):
        prune.custom_from_mask(net[i], "weight", masks[f"{i}.weight"])
    sd = net.state_dict()
    assert "0.weight_orig" in sd and "0.weight" not in sd
    _check(layers_from_state_dict(sd), masks, weights)


def test_torch_ao_pruning_parametrization_needs_the_sparsifier_masks():
    net = _net()
    masks = _masks(net)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    sparsifier = WeightNormSparsifier(sparsity_level=0.5)
    sparsifier.prepare(net, config=[{"tensor_fqn": f"{i}.weight"} for i in (0, 2, 3)])
    for i in (0, 2, 3):
        net[i].parametrizations.weight[0].mask.copy_(masks[f"{i}.weight"].float())
    sd = net.state_dict()
    assert "0.parametrizations.weight.original" in sd and not any("mask" in k for k in sd)  # torch 2.13
    missing = read_layers(sd)
    assert not missing.layers and "does not save FakeSparsity masks" in missing.skipped["0.weight"]
    _check(layers_from_state_dict(sd, masks=sparsifier.state_dict()), masks, weights)


def test_plain_state_dict_zeros_are_the_mask_and_dense_tensors_are_not_layers():
    net = _net()
    masks = _masks(net)
    masks.pop("3.weight")  # stays dense
    with torch.no_grad():
        for name, mask in masks.items():
            p = net.get_parameter(name)
            p.copy_(torch.where(mask, p.sign() * (p.abs() + 0.1), 0.0))
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    _check(layers_from_state_dict(net.state_dict()), masks, weights)


def test_sift_masks_and_safetensors_file(tmp_path):
    from sift_train import sparse_ift

    model = sparse_ift(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                                     nn.Linear(16, 2)), "dense", 0.5, torch.randn(4, 8))
    sd = model.state_dict()
    masks = {"2.weight": sd["2.weight_mask"]}
    _check(layers_from_state_dict(sd), masks, {"2.weight": sd["2.weight"]})
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "model.safetensors")
    assert main(["metrics", str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "m.csv")]) == 0
    assert (tmp_path / "m.csv").read_text().splitlines()[1].startswith("2.weight,16x16,0.5")


def test_transposed_layer_is_refused_without_the_option_and_read_with_it(tmp_path):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(8, 24, generator=g) < 0.3  # Hugging Face Conv1D: (in, out)
    sd = {"h.0.attn.c_attn.weight": torch.randn(8, 24, generator=g) * mask, "h.0.attn.c_attn.bias": torch.zeros(24),
          "h.0.attn.c_attn.weight_mask": mask}
    with pytest.raises(ValueError, match=r"layer h.0.attn.c_attn.weight: looks transposed.*transposed=\['h.0.attn.c_attn'\]"):
        layers_from_state_dict(sd)
    square = {"h.0.mlp.c_proj.weight": torch.randn(8, 8, generator=g), "h.0.mlp.c_proj.weight_mask": mask[:, :8]}
    with pytest.raises(ValueError, match="GPT-2 Conv1D"):
        layers_from_state_dict(square)
    m, w = layers_from_state_dict(sd, transposed=["*.c_attn"])["h.0.attn.c_attn.weight"]
    assert m.shape == (24, 8) and np.array_equal(m, mask.numpy().T)
    torch.save({"model": sd}, tmp_path / "ckpt.pt")
    assert main(["metrics", str(tmp_path / "ckpt.pt")]) == 1  # skipped, reported
    assert main(["metrics", str(tmp_path / "ckpt.pt"), "--transposed", "*.c_attn"]) == 0


class Evil:
    """Any object a safe loader must refuse."""


def test_checkpoint_file_with_model_and_sparsifier_and_no_pickle(tmp_path, capsys):
    net = _net()
    sparsifier = WeightNormSparsifier(sparsity_level=0.5)
    sparsifier.prepare(net, config=[{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    masks = {fqn: s["mask"] for fqn, s in sparsifier.state_dict()["state"].items()}
    torch.save({"model": net.state_dict(), "masks": masks}, tmp_path / "c.pt")
    assert main(["metrics", str(tmp_path / "c.pt")]) == 0
    assert "0.weight" in capsys.readouterr().out
    torch.save({"model": net.state_dict(), "sparsifier": sparsifier.state_dict()}, tmp_path / "raw.pt")
    assert main(["metrics", str(tmp_path / "raw.pt")]) == 2  # a defaultdict: refused, with the fix
    assert "save {'model': model.state_dict(), 'masks'" in capsys.readouterr().err
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    assert main(["metrics", str(tmp_path / "evil.pt")]) == 2
    assert "without unpickling arbitrary objects" in capsys.readouterr().err
