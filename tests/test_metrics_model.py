"""model_metrics (accepted input forms, tidy rows) and aggregate_layers (metrics.md §9.4)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import sift_graph


def _layers(seed=0):
    rng = np.random.default_rng(seed)
    conv = rng.random((16, 8, 3, 3)) < 0.3
    fc = rng.random((10, 16)) < 0.5
    return {"conv.weight": (conv, rng.standard_normal(conv.shape)),
            "fc.weight": (fc, rng.standard_normal(fc.shape))}


def test_one_row_per_layer_with_layer_shape_density_metrics_and_reason_last():
    layers = _layers()
    df = sift_graph.model_metrics(layers)
    assert list(df["layer"]) == ["conv.weight", "fc.weight"]
    assert list(df["shape"]) == ["16x8x3x3", "10x16"]
    assert df["density"].iloc[1] == pytest.approx(layers["fc.weight"][0].mean())
    assert list(df.columns[:3]) == ["layer", "shape", "density"] and df.columns[-1] == "reason"
    row = sift_graph.layer_metrics(*layers["conv.weight"])
    assert df.iloc[0]["delta_r"] == row["delta_r"] and df.iloc[0]["lambda_imsg"] == row["lambda_imsg"]


def test_state_dict_with_weight_mask_buffers_is_accepted():
    layers = _layers(1)
    sd = {}
    for name, (m, w) in layers.items():
        prefix = name[: -len(".weight")]
        sd[f"{prefix}.weight"] = torch.from_numpy(w * m)
        sd[f"{prefix}.weight_mask"] = torch.from_numpy(m)
        sd[f"{prefix}.bias"] = torch.zeros(m.shape[0])
    sd["bn.weight"] = torch.ones(4)  # no mask: not a layer
    pd.testing.assert_frame_equal(sift_graph.model_metrics(sd), sift_graph.model_metrics(layers))


def test_state_dict_of_torch_prune_weight_orig_is_accepted():
    m, w = _layers(2)["fc.weight"]
    sd = {"fc.weight_orig": torch.from_numpy(w), "fc.weight_mask": torch.from_numpy(m.astype(np.float32))}
    df = sift_graph.model_metrics(sd)
    assert list(df["layer"]) == ["fc.weight"]
    assert df.iloc[0]["lambda"] == sift_graph.layer_metrics(m, w)["lambda"]


def test_masks_only_mapping_gives_mask_metrics():
    m, _ = _layers(3)["conv.weight"]
    df = sift_graph.model_metrics({"conv": m})
    assert df.iloc[0]["reason"] == "no_weight" and math.isnan(df.iloc[0]["lambda"])


def _frame():
    return pd.DataFrame({"layer": ["a", "b", "c"], "shape": ["1x1"] * 3, "density": [0.5, 0.5, 0.2],
                         "delta_r": [1.0, 3.0, math.nan], "lambda": [2.0, math.nan, math.nan],
                         "reason": ["", "degree_rule_weighted", "degree_rule"]})


def test_aggregate_skip_is_mean_over_valid_layers_with_counts():
    agg = sift_graph.aggregate_layers(_frame())
    assert agg["delta_r"] == 2.0 and agg["lambda"] == 2.0
    assert agg["n_layers"] == 3 and agg["n_valid"] == 1
    assert agg["n_valid_delta_r"] == 2 and agg["n_valid_lambda"] == 1
    assert "layer" not in agg and "shape" not in agg


def test_aggregate_zero_counts_invalid_layers_as_zero_like_the_reference():
    agg = sift_graph.aggregate_layers(_frame(), invalid="zero")
    assert agg["delta_r"] == pytest.approx(4.0 / 3) and agg["lambda"] == pytest.approx(2.0 / 3)


def test_aggregate_ignores_identifier_columns_and_rejects_unknown_rule():
    df = _frame().assign(run="r", step=100, epoch=1.0)
    assert "step" not in sift_graph.aggregate_layers(df)
    with pytest.raises(ValueError, match="'skip' or 'zero'"):
        sift_graph.aggregate_layers(df, invalid="drop")
