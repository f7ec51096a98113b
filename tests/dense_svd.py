"""The independent reference of the spectral tests: the top two singular values by dense float64 SVD."""
from __future__ import annotations

import numpy as np

from sift_graph import threads


def svd_top2(a: np.ndarray) -> np.ndarray:
    with threads.blas_threads(1):  # multi-threaded LAPACK crawls on a loaded 2-core machine
        s = np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)
    return np.concatenate([s, [0.0, 0.0]])[:2]
