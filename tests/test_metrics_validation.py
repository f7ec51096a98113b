"""Bad input fails at the public boundary with a ValueError naming the problem and what was received."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import sift_graph


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 5)])
def test_wrong_rank_names_the_expected_layout_and_received_shape(shape):
    with pytest.raises(ValueError, match=rf"2-D .*3-D .*4-D .*got shape \({shape[0]},"):
        sift_graph.layer_metrics(np.ones(shape))


def test_mismatched_mask_and_weight_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"shapes differ: mask \(4, 5\), weight \(5, 4\)"):
        sift_graph.layer_metrics(np.ones((4, 5)), np.ones((5, 4)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(bad):
    w = np.ones((4, 5))
    w[1, 2] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        sift_graph.layer_metrics(np.ones((4, 5)), w)


def test_non_binary_mask_is_rejected_with_an_example_value():
    m = np.ones((4, 5))
    m[0, 0] = 0.5
    with pytest.raises(ValueError, match=r"binary 0/1 mask.*0\.5"):
        sift_graph.layer_metrics(m)


def test_nan_mask_is_rejected():
    m = np.ones((4, 5))
    m[0, 0] = np.nan
    with pytest.raises(ValueError, match="mask: contains NaN"):
        sift_graph.layer_metrics(m)


def test_unknown_convention_is_rejected():
    with pytest.raises(ValueError, match="unknown convention 'paper'"):
        sift_graph.layer_metrics(np.ones((4, 4)), convention="paper")


def test_bool_float_and_torch_masks_are_accepted():
    m = np.eye(6, dtype=bool) | np.roll(np.eye(6, dtype=bool), 1, axis=1) | np.roll(np.eye(6, dtype=bool), 2, axis=1)
    ref = sift_graph.layer_metrics(m)
    assert repr(sift_graph.layer_metrics(m.astype(np.float32))) == repr(ref)
    assert repr(sift_graph.layer_metrics(torch.from_numpy(m))) == repr(ref)
    assert repr(sift_graph.layer_metrics(torch.from_numpy(m).to(torch.bfloat16))) == repr(ref)


def test_model_metrics_error_names_the_layer():
    with pytest.raises(ValueError, match=r"layer 'fc': .*got shape \(3,\)"):
        sift_graph.model_metrics({"conv": np.ones((4, 2, 3, 3)), "fc": np.ones(3)})


LINEAR_IN_SCALE = ("lambda", "lambda_sigma1", "lambda_sigma2", "lambda_imsg")


@pytest.mark.parametrize("scale", [1e154, 1e300, 1e-200, 1e-300, 1e-310])
def test_weighted_metrics_scale_linearly_with_extreme_weight_magnitudes(scale):
    """λ, σ(|W|) and λ_imsg are linear in a global weight scale c (σ(c·B) = c·σ(B)); every other
    metric ignores it. Holds for float64 weights far beyond where squares over/underflow."""
    rng = np.random.default_rng(3)
    mask = rng.random((24, 12, 3, 3)) < 0.3
    w = rng.standard_normal(mask.shape)
    base = sift_graph.layer_metrics(mask, w)
    scaled = sift_graph.layer_metrics(mask, w * scale)
    assert scaled["reason"] == base["reason"] == ""
    for key in LINEAR_IN_SCALE:
        assert scaled[key] == pytest.approx(base[key] * scale, rel=1e-9, abs=0), key
    for key in ("delta_r", "delta_r_imdb", "sigma1", "sigma2", "n_edges", "n_subgraphs"):
        assert scaled[key] == base[key], key
    assert sift_graph.spectral_gap(mask, w * scale) == pytest.approx(base["lambda"] * scale, rel=1e-9, abs=0)


def test_weights_whose_spectrum_overflows_float64_are_a_value_error():
    w = np.full((16, 16), 1.5e308)  # σ1 = 16 · 1.5e308 is beyond float64
    with pytest.raises(ValueError, match="overflow float64"):
        sift_graph.layer_metrics(np.ones((16, 16)), w)


def test_meta_tensor_is_a_value_error():
    with pytest.raises(ValueError, match="meta device"):
        sift_graph.layer_metrics(torch.ones(4, 4), torch.empty(4, 4, device="meta"))


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="expected 'cpu', 'cuda' or 'cuda:N'"):
        sift_graph.layer_metrics(np.ones((4, 4)), device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is absent")
def test_cuda_device_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        sift_graph.layer_metrics(np.ones((4, 4)), device="cuda")
