"""sift_train: Sparse Iso-FLOP Transformations and dynamic sparse training."""
from sift_graph.version import __version__

from .sparse_params import mark_sparse, sparse_parameters

__all__ = ["mark_sparse", "sparse_parameters", "__version__"]
