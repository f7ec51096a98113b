"""Figures and their pure helpers (specs/metrics.md §7, §9.5)."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from sift_graph import plots


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    points = [(1, 5), (2, 4), (3, 3), (2, 2), (1, 1), (3, 3), (0, 6), (2, 4.5), (3, 2.5)]
    # (2,4) < (2,4.5); (2,2), (1,1) < (3,3); (3,2.5) < (3,3); identical (3,3) do not dominate each other.
    expected = [True, False, True, False, False, True, True, True, False]
    assert plots.pareto_front(points).tolist() == expected


def test_pareto_front_single_point_and_one_strict_inequality():
    assert plots.pareto_front([(0.0, 0.0)]).tolist() == [True]
    assert plots.pareto_front([(1, 1), (1, 2)]).tolist() == [False, True]


def test_interpolation_exact_for_linear_surface_inside_hull_and_nan_outside():
    rng = np.random.default_rng(0)
    inner = rng.uniform(0, 0.5, size=(30, 2))
    pts = np.vstack([[(0, 0), (1, 0), (0, 1)], inner[inner.sum(1) < 1]])
    x, y = pts[:, 0] * 10.0, pts[:, 1] * 0.01  # very different units: rescale=True matters
    z = 3.0 * x - 200.0 * y + 7.0
    xi, yi, zi = plots.interpolate_grid(x, y, z, n=100)
    assert xi.shape == yi.shape == zi.shape == (100, 100)
    assert np.allclose(xi[0], np.linspace(0, 10, 100)) and np.allclose(yi[:, 0], np.linspace(0, 0.01, 100))
    s = xi / 10.0 + yi / 0.01  # hull is the triangle s <= 1
    inside, outside = s < 1 - 1e-9, s > 1 + 1e-9
    np.testing.assert_allclose(zi[inside], 3.0 * xi[inside] - 200.0 * yi[inside] + 7.0, atol=1e-9)
    assert outside.sum() > 4000 and np.isnan(zi[outside]).all()


@pytest.mark.parametrize("x, y", [([0, 1], [0, 1]), ([0, 1, 2, 3], [0, 2, 4, 6]), ([1, 1, 1], [0, 1, 2])])
def test_interpolation_refuses_fewer_than_three_or_collinear_points(x, y):
    with pytest.raises(ValueError, match="no interpolation possible"):
        plots.interpolate_grid(x, y, np.arange(len(x)), n=10)


def _summary(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"run": [f"r{i % 3}" for i in range(n)], "family": ["wide", "wide", "parallel"] * (n // 3),
                         "step": np.repeat(np.arange(n // 3) * 10, 3), "delta_r_imdb": rng.uniform(1, 3, n),
                         "lambda_imsg": rng.uniform(0, 1, n), "delta_r": rng.uniform(0, 1, n),
                         "lambda": rng.uniform(0, 1, n), "test_acc": rng.uniform(0.2, 0.9, n)})


def test_pareto_heatmap_labels_colour_range_and_front_legend():
    summary = _summary()
    fig = plots.pareto_heatmap(summary, x="delta_r_imdb", y="lambda_imsg")
    ax, cax = fig.axes
    assert isinstance(fig, Figure)
    assert ax.get_xlabel() == r"$\Delta r_{\mathrm{imdb}}$" and ax.get_ylabel() == r"$\lambda_{\mathrm{imsg}}$"
    assert cax.get_ylabel() == "Test accuracy (%)"
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    assert mesh.cmap.name == "coolwarm"
    assert mesh.norm.vmin == pytest.approx(100 * summary.test_acc.min())
    assert mesh.norm.vmax == pytest.approx(100 * summary.test_acc.max())
    assert any("Pareto front" in t.get_text() and "sift addition" in t.get_text()
               for t in fig.legends[0].get_texts())


def test_pareto_heatmap_degenerate_group_draws_points_and_says_so():
    summary = _summary().iloc[:2]
    fig = plots.pareto_heatmap(summary, x="delta_r", y="lambda", title="tiny")
    ax = fig.axes[0]
    assert plots.NO_SURFACE in ax.get_title() and ax.get_xlabel() == r"$\Delta r$"
    assert not any(isinstance(c, QuadMesh) for c in ax.collections)
    assert len(ax.collections[0].get_offsets()) == 2


def test_trajectories_one_row_per_family_one_line_per_run():
    summary = _summary()
    fig = plots.trajectories(summary, metrics=("delta_r", "lambda"))
    assert len(fig.axes) == 2 * 3  # families parallel, wide x (delta_r, lambda, accuracy)
    assert [ax.get_ylabel() for ax in fig.axes[:3]] == [r"$\Delta r$", r"$\lambda$", "Test accuracy (%)"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1, 1, 2, 2, 2]
    # accuracy panels are in percent
    acc = np.concatenate([ln.get_ydata() for ax in (fig.axes[2], fig.axes[5]) for ln in ax.get_lines()])
    np.testing.assert_allclose(sorted(acc), sorted(100 * summary.test_acc))


def test_layer_heatmap_is_layer_by_step_with_nan_blank():
    layers = pd.DataFrame({"run": "r", "step": [0, 0, 10, 10], "layer": ["b", "a", "b", "a"],
                           "delta_r_imdb": [1.0, 2.0, np.nan, 4.0]})
    fig = plots.layer_heatmap(layers, metric="delta_r_imdb")
    data = fig.axes[0].images[0].get_array()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b", "a"]
    assert data.shape == (2, 2) and data.mask.tolist() == [[False, True], [False, False]]
    assert data[1].tolist() == [2.0, 4.0]
    with pytest.raises(ValueError, match="pass run="):
        plots.layer_heatmap(pd.concat([layers, layers.assign(run="s")]))


def test_heatmap_surface_lies_on_data_coordinates():
    """The colour drawn at each cell is the surface's value at that cell's (x, y) in data units."""
    rng = np.random.default_rng(3)
    x = np.r_[0.0, 10.0, 0.0, 10.0, rng.uniform(0, 10, 20)]
    y = np.r_[0.0, 0.0, 0.01, 0.01, rng.uniform(0, 0.01, 20)]  # other units than x: a swap shows
    acc = 0.2 + 0.03 * x + 40.0 * y  # linear: exact under linear interpolation
    fig = plots.pareto_heatmap(pd.DataFrame({"dx": x, "ly": y, "test_acc": acc}), x="dx", y="ly", n=40)
    ax = fig.axes[0]
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    corners = mesh.get_coordinates()  # (rows + 1, cols + 1, 2) cell corners in data units
    cx = (corners[:-1, :-1, 0] + corners[1:, 1:, 0]) / 2
    cy = (corners[:-1, :-1, 1] + corners[1:, 1:, 1]) / 2
    values = np.ma.masked_invalid(mesh.get_array()).reshape(cx.shape)
    assert cx.min() < 0.5 and cx.max() > 9.5 and cy.max() < 0.011  # x spans x's range, y spans y's
    np.testing.assert_allclose(values.compressed(), 100 * (0.2 + 0.03 * cx + 40.0 * cy)[~values.mask],
                               rtol=1e-9)
    np.testing.assert_array_equal(ax.collections[1].get_offsets(), np.column_stack([x, y]))


def test_heatmap_surface_reports_why_it_has_none():
    line = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [0.0, 2.0, 4.0], "test_acc": [0.1, 0.2, 0.3]})
    surface = plots.heatmap_surface(line, "a", "b")
    assert surface.grid is None and "collinear" in surface.problem and len(surface.z) == 3
    ok = plots.heatmap_surface(_summary(), "delta_r", "lambda")
    assert ok.grid is not None and ok.problem == ""
