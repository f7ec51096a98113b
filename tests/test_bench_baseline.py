"""benchmarks/bench_metrics.py's reference-style baselines follow hoang2023a's rules: on small layers
they give sift's metrics within the float32 ARPACK noise of the reference code (metrics.md §11: the
faithful ``reference`` baseline also takes its degrees from the dense bigraph's edge list)."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import sift_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_metrics  # noqa: E402


@pytest.mark.parametrize("method", ["reference", "sparse-adj"])
@pytest.mark.parametrize("shape, density", [((24, 16, 3, 3), 0.3), ((40, 96), 0.2)])
def test_baseline_gives_the_metrics_of_sift(method, shape, density):
    rng = np.random.default_rng(11)
    mask = rng.random(shape) < density
    weight = rng.standard_normal(shape).astype(np.float32)
    base = bench_metrics.baseline_layer_metrics(mask, weight, dense_first=method == "reference")
    ours = sift_graph.layer_metrics(mask, weight)
    for name in bench_metrics.METRICS:
        assert math.isfinite(ours[name])
        assert abs(base[name] - ours[name]) <= 1e-3 * max(1.0, abs(ours[name])), name


def test_dense_bigraph_degrees_are_the_edge_counts():
    t = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]], dtype=np.float32)  # 3 edges, 2 left, 3 right nodes
    dense, d_left, d_right = bench_metrics._dense_bigraph(t)
    assert dense.shape == (5, 5) and np.array_equal(dense, dense.T)
    assert (d_left, d_right) == (3 / 2, 3 / 3)
