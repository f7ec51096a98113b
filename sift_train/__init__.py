"""sift_train: Sparse Iso-FLOP Transformations and dynamic sparse training."""
from .masking import Masking
from .sparse_params import mark_sparse, sparse_parameters
from .sparse_training import SparseTraining

__version__ = "0.1.0"
__all__ = ["Masking", "SparseTraining", "mark_sparse", "sparse_parameters", "__version__"]
