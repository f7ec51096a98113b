"""sift_graph: exact, fast Ramanujan-graph metrics of sparse layers (docs/metrics.md)."""
from .version import __version__

from .bipartite import biadjacency, node_labels, to_networkx
from .layer import CONVENTIONS, layer_metrics, masked_layer_metrics
from .checkpoints import layers_from_state_dict, read_layers
from .model import aggregate_layers, model_metrics
from .ramanujan import delta_r, delta_r_imdb, spectral_gap, spectral_gap_imsg
from .spectral import top2_singular_values
from .runs import RunFormatError, load_run
from .pipeline import analyze, run_analysis
