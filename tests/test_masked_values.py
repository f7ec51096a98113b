"""masked_layer_metrics: the run format's (mask, values) pair gives layer_metrics' result bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

import sift_graph
from sift_graph.layer import masked_layer_metrics


@pytest.mark.parametrize("shape", [(40, 30), (24, 12, 3, 3), (16, 8, 5)])
@pytest.mark.parametrize("convention", sift_graph.CONVENTIONS)
def test_mask_and_values_equal_the_dense_weight(shape, convention):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.3
    values = rng.standard_normal(int(mask.sum())).astype(np.float32)
    values[::7] = 0.0  # kept weights of exactly 0 are no edge of |W⊙M|
    weight = np.zeros(shape, dtype=np.float32)
    weight[mask] = values
    ours = masked_layer_metrics(mask, values, convention=convention)
    assert repr(ours) == repr(sift_graph.layer_metrics(mask, weight, convention=convention))


def test_bad_mask_or_values_are_one_line_value_errors():
    mask = np.ones((4, 6), dtype=bool)
    with pytest.raises(ValueError, match="values: expected 24 floats"):
        masked_layer_metrics(mask, np.ones(23, dtype=np.float32))
    with pytest.raises(ValueError, match="values: expected 24 floats"):
        masked_layer_metrics(mask, np.ones(24, dtype=np.int64))
    with pytest.raises(ValueError, match="NaN/inf"):
        masked_layer_metrics(mask, np.full(24, np.nan))
    with pytest.raises(ValueError, match="mask: expected a bool array"):
        masked_layer_metrics(mask.astype(np.float32), np.ones(24))
