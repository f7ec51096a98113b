"""sift_graph: Ramanujan-graph metrics of sparse layers."""
__version__ = "0.1.0"
