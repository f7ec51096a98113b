"""Layer → bipartite graph (metrics.md §2.1): layout, node labels, networkx export, degree classes."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sift_graph
from sift_graph.bipartite import degree_classes, node_counts


def test_linear_biadjacency_is_the_transposed_weight():
    w = np.arange(1, 13, dtype=np.float32).reshape(3, 4)  # (out=3, in=4)
    w[1, 2] = 0
    b = sift_graph.biadjacency(w)
    assert sp.isspmatrix_csr(b) and b.shape == (4, 3) and b.dtype == np.float64
    np.testing.assert_array_equal(b.toarray(), w.T)
    assert b.nnz == 11  # zeros are not stored: an edge iff nonzero


def test_conv_kernel_is_unrolled_into_channel_ky_kx_input_nodes():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3, 2, 4))  # (c_out, c_in, kh, kw)
    b = sift_graph.biadjacency(w).toarray()
    assert b.shape == (3 * 2 * 4, 5)
    ins, outs = sift_graph.node_labels(w.shape)
    for i, (c, y, x) in enumerate(ins):
        assert i == c * 2 * 4 + y * 4 + x
        np.testing.assert_array_equal(b[i], w[:, c, y, x])
    np.testing.assert_array_equal(outs, np.arange(5))


def test_biadjacency_accepts_torch_tensors():
    t = torch.randn(6, 4, 3, 3)
    np.testing.assert_array_equal(sift_graph.biadjacency(t).toarray(), sift_graph.biadjacency(t.numpy()).toarray())


def test_to_networkx_has_bipartite_attribute_labels_and_abs_weights():
    mask = np.array([[1, 0, 1], [0, 1, 1]])  # (out=2, in=3)
    weight = np.array([[-2.0, 5.0, 3.0], [1.0, -4.0, 0.5]])
    g = sift_graph.to_networkx(mask, weight)
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 4
    assert [g.nodes[i]["bipartite"] for i in range(5)] == [0, 0, 0, 1, 1]
    assert g.nodes[1]["label"] == (1, 0, 0) and g.nodes[4]["label"] == 1
    assert g.edges[0, 3]["weight"] == 2.0 and g.edges[1, 4]["weight"] == 4.0
    assert not g.has_edge(1, 3)  # masked out, even though the weight is nonzero
    assert all(d["weight"] == 1.0 for _, _, d in sift_graph.to_networkx(mask).edges(data=True))


def test_to_networkx_keeps_isolated_nodes():
    mask = np.zeros((2, 3))
    mask[0, 0] = 1
    g = sift_graph.to_networkx(mask)
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 1


def test_node_counts_ignore_isolated_nodes():
    b = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]], float))
    assert node_counts(b) == (3, 2, 2)


def test_degree_classes_are_in_first_occurrence_order():
    b = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 1]], float))
    classes = degree_classes(b)
    assert [d for d, _ in classes] == [2, 1, 0]
    assert [list(idx) for _, idx in classes] == [[0, 3], [1, 4], [2]]


def test_conv1d_biadjacency_against_a_hand_built_one_and_a_dense_svd():
    rng = np.random.default_rng(1)
    c_out, c_in, k = 5, 3, 4
    w = rng.standard_normal((c_out, c_in, k)) * (rng.random((c_out, c_in, k)) < 0.5)
    hand = np.zeros((c_in * k, c_out))  # input node c*k + tap, written out entry by entry
    for o in range(c_out):
        for c in range(c_in):
            for t in range(k):
                hand[c * k + t, o] = w[o, c, t]
    b = sift_graph.biadjacency(w)
    np.testing.assert_array_equal(b.toarray(), hand)
    ins, _ = sift_graph.node_labels(w.shape)
    assert [tuple(r) for r in ins[:5]] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3), (1, 0, 0)]
    m = sift_graph.layer_metrics(w != 0, w)
    sm = np.linalg.svd((hand != 0).astype(float), compute_uv=False)  # dense SVD of the mask's B
    sw = np.linalg.svd(np.abs(hand), compute_uv=False)  # and of |W⊙M|'s B
    assert (m["n_in"], m["n_out"], m["n_edges"]) == (c_in * k, c_out, int((hand != 0).sum()))
    assert m["sigma1"] == pytest.approx(sm[0], rel=1e-9) and m["sigma2"] == pytest.approx(sm[1], rel=1e-9)
    assert m["lambda_sigma1"] == pytest.approx(sw[0], rel=1e-9)
    assert m["lambda"] == pytest.approx(sw[0] - sw[1], rel=1e-9)


@pytest.mark.parametrize("shape", [(3,), (1, 2, 3, 4, 5)])
def test_node_labels_reject_other_ranks(shape):
    with pytest.raises(ValueError, match="2-D, 3-D or 4-D"):
        sift_graph.node_labels(shape)
