"""sift_train: Sparse Iso-FLOP Transformations and dynamic sparse training."""
from .sparse_params import mark_sparse, sparse_parameters

__version__ = "0.1.0"
__all__ = ["mark_sparse", "sparse_parameters", "__version__"]
