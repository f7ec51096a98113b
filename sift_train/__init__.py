"""sift_train: Sparse Iso-FLOP Transformations and dynamic sparse training."""
from sift_graph.version import __version__

from .flops import count_flops
from .masking import Masking
from .rundir import RunWriter
from .sparse_params import mark_sparse, sparse_parameters
from .sparse_ift import sparse_ift
from .sparse_training import SparseTraining

__all__ = ["Masking", "RunWriter", "SparseTraining", "count_flops", "mark_sparse", "sparse_ift",
           "sparse_parameters", "__version__"]
