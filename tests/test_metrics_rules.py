"""The conventions' rules (metrics.md §3, §5, §9.3), one test per rule, on hand-made layers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sift_graph
from sift_graph import hoang2023a, hoang2023b
from sift_graph.bipartite import layer_biadjacencies
from sift_graph.validation import check_layer


def circulant(n_out, n_in, d, seed=0):
    """(out, in) mask: input i feeds outputs i..i+d-1 (mod n_out), columns shuffled."""
    m = np.zeros((n_out, n_in))
    for i in range(n_in):
        m[(i + np.arange(d)) % n_out, i] = 1
    return m[:, np.random.default_rng(seed).permutation(n_in)]


def classes_a(mask, weight=None):
    return hoang2023a.class_scores(*layer_biadjacencies(*check_layer(mask, weight)))


def test_values_are_plain_python_numbers_and_reason_is_empty_when_valid():
    rng = np.random.default_rng(0)
    mask = rng.random((32, 64)) < 0.5
    for conv in sift_graph.CONVENTIONS:
        out = sift_graph.layer_metrics(mask, rng.standard_normal((32, 64)), convention=conv)
        assert out["reason"] == ""
        assert all(type(v) in (int, float, str) for v in out.values())
        assert type(out["n_subgraphs"]) is int and type(out["n_edges"]) is int


def test_hoang2023a_keys_are_present():
    out = sift_graph.layer_metrics(np.ones((4, 4)), np.ones((4, 4)))
    for key in ["delta_r", "delta_r_imdb", "lambda", "lambda_imsg", "sigma1", "sigma2", "lambda_sigma1",
                "lambda_sigma2", "n_left", "n_right", "n_edges", "d_left", "d_right", "n_subgraphs", "narc", "reason"]:
        assert key in out


def test_hoang2023b_keys_are_present():
    out = sift_graph.layer_metrics(np.ones((4, 4)), convention="hoang2023b")
    for key in ["delta_r", "delta_s", "imdb", "imdb_norm", "narc", "sigma1", "sigma2", "n_subgraphs", "reason"]:
        assert key in out


def test_empty_layer_is_nan_with_reason_no_edges():
    for conv in sift_graph.CONVENTIONS:
        out = sift_graph.layer_metrics(np.zeros((8, 8)), np.ones((8, 8)), convention=conv)
        assert out["reason"] == "no_edges"
        assert out["n_edges"] == 0
        assert all(math.isnan(v) for k, v in out.items() if k in ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg", "imdb"))


def test_hoang2023a_full_graph_rule_uses_outputs_as_left_side():
    """(out=4, in=12), every input feeds one output: fan-in 3 passes, fan-out 1 fails (> 1)."""
    mask = np.zeros((4, 12))
    mask[np.arange(12) % 4, np.arange(12)] = 1
    out = sift_graph.layer_metrics(mask, np.ones((4, 12)))
    assert math.isnan(out["delta_r"]) and math.isnan(out["lambda"])
    assert out["reason"].split(";")[0] == "degree_rule"
    # fan-out 2 (> 1) and fan-in 6 (≥ 3): valid
    out = sift_graph.layer_metrics(circulant(4, 12, 2), np.ones((4, 12)))
    assert not math.isnan(out["delta_r"])
    # hoang2023b needs both means ≥ 3, so fan-out 2 fails there
    assert sift_graph.layer_metrics(circulant(4, 12, 2), convention="hoang2023b")["reason"].startswith("degree_rule")


def test_hoang2023a_delta_r_formula_on_biregular_graph():
    mask = circulant(16, 16, 4)
    out = sift_graph.layer_metrics(mask, np.ones_like(mask))
    assert out["d_left"] == out["d_right"] == 4
    assert out["delta_r"] == pytest.approx(2 * math.sqrt(3) - out["sigma2"], abs=1e-12)
    assert out["sigma1"] == pytest.approx(4.0, abs=1e-12)


def test_hoang2023a_delta_r_equals_closed_form_on_band_circulant():
    """circulant(16, 16, 4) is the transposed, column-shuffled band circulant with 4 ones per row:
    σ1 = 4, σ2 = max_k |sin(4πk/16) / sin(πk/16)| (neither changes under transpose or column order),
    so Δr = 2√3 − σ2 without using sift's σ2."""
    n, d = 16, 4
    k = np.arange(1, n)
    sigma2 = float(np.max(np.abs(np.sin(np.pi * d * k / n) / np.sin(np.pi * k / n))))
    out = sift_graph.layer_metrics(circulant(n, n, d), np.ones((n, n)))
    assert out["sigma2"] == pytest.approx(sigma2, abs=1e-9)
    assert out["delta_r"] == pytest.approx(2 * math.sqrt(d - 1) - sigma2, abs=1e-9)


def test_class_kept_only_with_two_inputs():
    mask = circulant(8, 9, 4)
    mask[:, 0] = 0
    mask[:7, 0] = 1  # one input of degree 7: a class of k = 1
    degrees = [c["degree"] for c in classes_a(mask)]
    assert 4 in degrees and 7 not in degrees


def test_class_needs_degree_three_and_right_mean_above_one():
    mask = np.zeros((10, 4))
    mask[[0, 1], 0] = mask[[2, 3], 1] = 1  # degree 2, k = 2: d < 3
    mask[[4, 5, 6], 2] = mask[[7, 8, 9], 3] = 1  # degree 3, k = 2, o = 6: k·d/o = 1, not > 1
    cls = {c["degree"]: c for c in classes_a(mask)}
    assert not cls[2]["kept"] and not cls[3]["kept"]
    out = sift_graph.layer_metrics(mask, np.ones_like(mask))
    assert out["n_subgraphs"] == 0 and "no_valid_class" in out["reason"]
    assert math.isnan(out["delta_r_imdb"]) and math.isnan(out["lambda_imsg"])


def test_cheeger_factor_scales_the_dense_layer_class():
    """All-ones 32×48 (out, in): one class, k = 48, o = 32, c = 48/79 (refvectors lin32x48_dense)."""
    out = sift_graph.layer_metrics(np.ones((32, 48)), np.ones((32, 48)))
    assert out["delta_r_imdb"] == pytest.approx(48 / 79 * out["delta_r"], rel=1e-12)
    assert out["sigma2"] <= 1e-12 * out["sigma1"]


def test_hoang2023b_class_needs_count_three_and_right_mean_three():
    mask = circulant(6, 6, 3).T  # 6 inputs of degree 3, o = 6: c·d/o = 3 → valid
    bs = layer_biadjacencies(*check_layer(mask))[0]
    assert [c["valid"] for c in hoang2023b.class_scores(bs)] == [True]
    two = mask[:, :2]  # count 2 < 3: not even a subgraph
    assert hoang2023b.class_scores(layer_biadjacencies(*check_layer(two))[0]) == []


def test_zero_weight_under_mask_changes_weighted_graph_only():
    rng = np.random.default_rng(5)
    mask = rng.random((40, 40)) < 0.4
    w = rng.standard_normal((40, 40))
    w_zero = w.copy()
    w_zero[mask & (rng.random((40, 40)) < 0.2)] = 0.0
    a, a0 = sift_graph.layer_metrics(mask, w), sift_graph.layer_metrics(mask, w_zero)
    assert a["delta_r"] == a0["delta_r"]  # hoang2023a's Δr is on the mask
    assert a["lambda"] != a0["lambda"]
    b, b0 = (sift_graph.layer_metrics(mask, x, convention="hoang2023b") for x in (w, w_zero))
    assert b0["n_edges"] < b["n_edges"] and b["delta_r"] != b0["delta_r"]  # hoang2023b: nonzero weights


def test_weighted_rule_failure_gives_reason_degree_rule_weighted():
    mask = circulant(8, 16, 4)
    w = np.ones_like(mask)
    w[:, :12] = 0.0  # only 4 inputs keep weight: fan-in of |W⊙M| = 2 < 3
    out = sift_graph.layer_metrics(mask, w)
    assert not math.isnan(out["delta_r"]) and math.isnan(out["lambda"])
    assert "degree_rule_weighted" in out["reason"]


def test_kept_class_failing_weighted_rule_gives_class_degree_rule_weighted():
    """One class (16 inputs of degree 4, 8 outputs) is kept on the mask; on |W⊙M| only input 0
    keeps weight, so the class's weighted right mean is 4/4 = 1, not > 1 (reference: inf)."""
    mask = circulant(8, 16, 4)
    w = np.zeros_like(mask)
    w[:, 0] = 1.0
    out = sift_graph.layer_metrics(mask, w)
    assert out["n_subgraphs"] == 1
    assert math.isnan(out["lambda_imsg"]) and not math.isnan(out["delta_r_imdb"])
    assert "class_degree_rule_weighted" in out["reason"]


def test_no_weight_gives_nan_weighted_metrics_and_reason_no_weight():
    mask = circulant(16, 32, 4)
    out = sift_graph.layer_metrics(mask)
    assert out["reason"] == "no_weight"
    assert math.isnan(out["lambda"]) and math.isnan(out["lambda_imsg"])
    assert not math.isnan(out["delta_r"]) and not math.isnan(out["delta_r_imdb"])
    b = sift_graph.layer_metrics(mask, convention="hoang2023b")
    assert b == sift_graph.layer_metrics(mask, np.ones_like(mask), convention="hoang2023b")


def test_masked_and_unmasked_weights_give_the_same_metrics():
    rng = np.random.default_rng(6)
    mask = rng.random((16, 8, 3, 3)) < 0.3
    w = rng.standard_normal(mask.shape)
    assert repr(sift_graph.layer_metrics(mask, w)) == repr(sift_graph.layer_metrics(mask, w * mask))


def test_torch_and_numpy_inputs_give_the_same_metrics():
    rng = np.random.default_rng(7)
    mask = rng.random((16, 8, 3, 3)) < 0.3
    w = rng.standard_normal(mask.shape).astype(np.float32)
    ours = sift_graph.layer_metrics(torch.from_numpy(mask), torch.from_numpy(w))
    assert repr(ours) == repr(sift_graph.layer_metrics(mask.astype(np.float32), w))


def test_public_metric_functions_equal_layer_metrics():
    rng = np.random.default_rng(8)
    mask = rng.random((32, 16, 3, 3)) < 0.2
    w = rng.standard_normal(mask.shape)
    out = sift_graph.layer_metrics(mask, w)
    assert sift_graph.delta_r(mask) == out["delta_r"]
    assert sift_graph.delta_r_imdb(mask) == out["delta_r_imdb"]
    assert sift_graph.spectral_gap(mask, w) == out["lambda"]
    assert sift_graph.spectral_gap_imsg(mask, w) == out["lambda_imsg"]


def test_two_thread_job_pool_equals_the_serial_result(monkeypatch):
    rng = np.random.default_rng(9)
    mask = rng.random((48, 24, 3, 3)) < 0.2
    w = rng.standard_normal(mask.shape)
    serial = sift_graph.layer_metrics(mask, w)
    monkeypatch.setattr(hoang2023a, "PARALLEL_MIN_EDGES", 0)
    monkeypatch.setattr(hoang2023a, "allowed_threads", lambda: 2)
    pools = []
    pool_class = hoang2023a.CallerRunsPool
    monkeypatch.setattr(hoang2023a, "CallerRunsPool", lambda **kw: pools.append(kw) or pool_class(**kw))
    assert repr(sift_graph.layer_metrics(mask, w)) == repr(serial)
    assert pools == [{"workers": 1}]


def test_full_graph_rule_holds_at_degree_three_exactly():
    """Mean degrees exactly at the threshold 3 pass (≥ 3, not > 3) in both conventions; just
    below fails. hoang2023a: outputs' mean fan-in 3 (inputs' fan-out 2 > 1); hoang2023b: both
    means 3."""
    exact_a = circulant(4, 6, 2)  # 6 inputs × fan-out 2 = 12 edges over 4 outputs: fan-in 3
    out = sift_graph.layer_metrics(exact_a, np.ones_like(exact_a))
    assert out["d_right"] == 3.0 and out["d_left"] == 2.0
    assert not math.isnan(out["delta_r"]) and not math.isnan(out["lambda"])
    assert "degree_rule" not in out["reason"].split(";")
    below = exact_a.copy()
    below[np.nonzero(below[:, 0])[0][0], 0] = 0  # 11 edges: fan-in 2.75
    out = sift_graph.layer_metrics(below, np.ones_like(below))
    assert math.isnan(out["delta_r"]) and out["reason"].split(";")[0] == "degree_rule"

    exact_b = circulant(6, 6, 3)  # every node of degree 3
    out = sift_graph.layer_metrics(exact_b, convention="hoang2023b")
    assert out["d_left"] == out["d_right"] == 3.0
    assert not math.isnan(out["delta_r"]) and "degree_rule" not in out["reason"].split(";")
    below = exact_b.copy()
    below[np.nonzero(below[:, 0])[0][0], 0] = 0
    assert sift_graph.layer_metrics(below, convention="hoang2023b")["reason"].split(";")[0] == "degree_rule"


def test_lambda_imsg_needs_every_kept_class_to_pass_its_weighted_rule():
    """Two kept classes (degrees 3 and 4); zeroing weights of the degree-4 class leaves each of
    its inputs two nonzero weights (weighted mean 2 < 3): λ_imsg is NaN although the degree-3
    class alone would give a value; with all weights nonzero both classes enter the mean."""
    mask = np.zeros((8, 8))
    for i in range(4):
        mask[(i + np.arange(3)) % 8, i] = 1  # degree 3
        mask[(2 * i + np.arange(4)) % 8, 4 + i] = 1  # degree 4
    w = np.ones_like(mask)
    full = sift_graph.layer_metrics(mask, w)
    cls = {c["degree"]: c for c in classes_a(mask, w)}
    assert cls[3]["kept"] and cls[4]["kept"] and cls[3]["weighted_valid"] and cls[4]["weighted_valid"]
    mean = (cls[3]["cheeger"] * cls[3]["gap"] + cls[4]["cheeger"] * cls[4]["gap"]) / 2
    assert full["lambda_imsg"] == pytest.approx(mean, rel=1e-12)

    w[np.nonzero(mask[:, 4:])[0][::2], 4 + np.nonzero(mask[:, 4:])[1][::2]] = 0  # 2 of 4 per input
    out = sift_graph.layer_metrics(mask, w)
    cls = {c["degree"]: c for c in classes_a(mask, w)}
    assert cls[3]["weighted_valid"] and not cls[4]["weighted_valid"] and cls[4]["kept"]
    assert math.isnan(out["lambda_imsg"]) and "class_degree_rule_weighted" in out["reason"].split(";")
    assert out["delta_r_imdb"] == full["delta_r_imdb"]


@pytest.mark.parametrize("n,coeffs", [(12, (3.0, -1.0, 2.0)), (20, (0.5, 1.5, -2.5, 1.0, 0.25))])
def test_lambda_and_lambda_imsg_equal_closed_form_on_weighted_circulant(n, coeffs):
    """B[i, (i+j) mod n] = |a_j| is a circulant, hence normal: its singular values are
    |Σ_j |a_j| e^{2πi·jk/n}|, k = 0..n−1 (σ1 = Σ|a_j| at k = 0). Every input has degree d, so the
    only class holds all n inputs and n outputs: λ_imsg = n/(2n−1)·λ (Cheeger factor)."""
    a = np.abs(np.array(coeffs))
    k = np.arange(n)
    spectrum = np.abs(np.exp(2j * np.pi * np.outer(k, np.arange(len(a))) / n) @ a)
    sigma1, sigma2 = spectrum[0], np.max(spectrum[1:])
    weight = np.zeros((n, n))  # (out, in): W[o, i] = a_{o−i}
    for j, c in enumerate(coeffs):
        weight[(np.arange(n) + j) % n, np.arange(n)] = c
    out = sift_graph.layer_metrics(weight != 0, weight)
    assert out["lambda_sigma1"] == pytest.approx(sigma1, rel=1e-12)
    assert out["lambda"] == pytest.approx(sigma1 - sigma2, abs=1e-9 * sigma1)
    assert out["n_subgraphs"] == 1
    assert out["lambda_imsg"] == pytest.approx(n / (2 * n - 1) * (sigma1 - sigma2), abs=1e-9 * sigma1)
