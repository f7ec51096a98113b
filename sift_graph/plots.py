"""Figures from the analysis tables: Pareto-curvature heatmap, trajectories, per-layer heatmap.

Every figure function takes a DataFrame (``summary.csv`` / ``layers.csv`` columns, ``docs/analyze.md``) and
returns a new matplotlib ``Figure`` (object-oriented API, no pyplot state, nothing shown);
:func:`save` writes one atomically.
The heatmap follows ``specs/metrics.md`` §7 / §9.5.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy.interpolate import griddata
from scipy.spatial import QhullError

from .files import atomic_write_bytes
from .stats import final_rows, spearman_ci

ACC_LABEL = "Test accuracy (%)"
SYMBOLS = {
    "delta_r": r"$\Delta r$",
    "delta_r_imdb": r"$\Delta r_{\mathrm{imdb}}$",
    "lambda": r"$\lambda$",
    "lambda_imsg": r"$\lambda_{\mathrm{imsg}}$",
    "delta_s": r"$\Delta s$",
    "imdb": "IMDB",
    "imdb_norm": "IMDB (normalised)",
    "narc": "NaRC",
    "test_acc": ACC_LABEL,
    "step": "Training step",
}
NO_SURFACE = "no interpolation possible"
PARETO_LABEL = "Pareto front (non-dominated, max. both axes; sift addition)"


def label(column: str) -> str:
    """Axis label of a table column: the metric symbol where there is one."""
    return SYMBOLS.get(column, column)


def save(fig: Figure, path, *, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format of its suffix (png, svg, pdf)."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def pareto_front(points) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (n, 2), maximising both coordinates.

    p dominates q iff p.x >= q.x and p.y >= q.y with one inequality strict (``specs/metrics.md`` §7,
    step 4). Identical points do not dominate each other.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    ge = (p[:, None, 0] >= p[None, :, 0]) & (p[:, None, 1] >= p[None, :, 1])
    gt = (p[:, None, 0] > p[None, :, 0]) | (p[:, None, 1] > p[None, :, 1])
    dominated = (ge & gt).any(axis=0)
    return ~dominated


def interpolate_grid(x, y, z, n: int = 100):
    """Linear Delaunay interpolation of z over an n x n grid spanning the data range.

    ``scipy.interpolate.griddata(..., method="linear", rescale=True)``, NaN outside the convex hull
    (``specs/metrics.md`` §7 steps 2-3). Returns ``(xi, yi, zi)``, each (n, n), ``zi[j, i]`` at
    ``(xi[j, i], yi[j, i])``. Raises ValueError when no triangle exists (fewer than 3 distinct points,
    a zero-width range, or collinear points).
    """
    x, y, z = (np.asarray(a, dtype=float).ravel() for a in (x, y, z))
    if len({(a, b) for a, b in zip(x, y)}) < 3:
        raise ValueError(f"fewer than 3 distinct points: {NO_SURFACE}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError(f"points are collinear (zero range on one axis): {NO_SURFACE}")
    xi, yi = np.meshgrid(np.linspace(x.min(), x.max(), n), np.linspace(y.min(), y.max(), n))
    try:
        zi = griddata((x, y), z, (xi, yi), method="linear", rescale=True)
    except QhullError:
        raise ValueError(f"points are collinear: {NO_SURFACE}") from None
    return xi, yi, zi


@dataclass(frozen=True)
class HeatmapSurface:
    """What a Pareto heatmap draws: the points (z scaled) and the interpolated grid, or why there is
    none (``problem``, empty when the surface exists)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    problem: str


def heatmap_surface(summary: pd.DataFrame, x: str = "delta_r_imdb", y: str = "lambda_imsg",
                    z: str = "test_acc", *, z_scale: float = 100.0, n: int = 100) -> HeatmapSurface:
    """The rows of ``summary`` defining x, y and z, and their :func:`interpolate_grid` surface."""
    data = summary[[x, y, z]].astype(float).dropna()
    px, py, pz = data[x].to_numpy(), data[y].to_numpy(), data[z].to_numpy() * z_scale
    if len(pz) == 0:
        return HeatmapSurface(px, py, pz, None, f"no snapshot with {x}, {y} and {z} defined; {NO_SURFACE}")
    try:
        return HeatmapSurface(px, py, pz, interpolate_grid(px, py, pz, n=n), "")
    except ValueError as exc:
        return HeatmapSurface(px, py, pz, None, str(exc))


def pareto_heatmap(summary: pd.DataFrame, x: str = "delta_r_imdb", y: str = "lambda_imsg",
                   z: str = "test_acc", *, z_scale: float = 100.0, title: str = "All runs",
                   n: int = 100, surface: HeatmapSurface | None = None, paths: bool = True) -> Figure:
    """Pareto-curvature heatmap: z (default test accuracy, in %) interpolated over (x, y).

    ``paths``: each run's snapshots joined in training order (thin line, arrow at its last snapshot).

    One point per row (snapshot). Coolwarm normalised to [min z, max z], blank outside the hull, the
    points overlaid and the Pareto front of (x, y) drawn and labelled as a sift addition. With fewer
    than 3 usable or collinear points only the points are drawn and the title says so.
    ``z_scale`` multiplies z for display (100: accuracy fraction -> %). ``surface``: the
    :func:`heatmap_surface` of the same arguments, when the caller computed it already.
    """
    if surface is None:
        surface = heatmap_surface(summary, x, y, z, z_scale=z_scale, n=n)
    px, py, pz = surface.x, surface.y, surface.z
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    if len(pz) == 0:
        ax.set_title(f"{title}: {surface.problem}", fontsize=10)
        return fig
    lo, hi = float(pz.min()), float(pz.max())
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
    if surface.grid is not None:
        xi, yi, zi = surface.grid
        ax.pcolormesh(xi, yi, np.ma.masked_invalid(zi), cmap="coolwarm", norm=norm, shading="auto",
                      rasterized=True)
    points = ax.scatter(px, py, c=pz, cmap="coolwarm", norm=norm, s=22, edgecolors="k",
                        linewidths=0.6, zorder=3, label="snapshots")
    front = pareto_front(np.column_stack([px, py]))
    order = np.argsort(px[front])
    ax.plot(px[front][order], py[front][order], "-", color="k", lw=1.2, marker="o", ms=8,
            mfc="none", mew=1.2, zorder=4, label=PARETO_LABEL)
    if paths and {"run", "step"} <= set(summary.columns):
        _draw_paths(ax, summary, x, y)
    fig.colorbar(points, ax=ax, label=label(z))
    for values, set_lim in ((px, ax.set_xlim), (py, ax.set_ylim)):
        pad = 0.04 * (np.ptp(values) or abs(values[0]) or 1.0)
        set_lim(values.min() - pad, values.max() + pad)
    note = f"{len(pz)} snapshots" + (f"; {surface.problem}" if surface.problem else "")
    ax.set_title(f"{title} ({note})", fontsize=10, wrap=True)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def trajectories(summary: pd.DataFrame, metrics=("delta_r", "delta_r_imdb", "lambda", "lambda_imsg"),
                 *, acc: str = "test_acc", group: str = "family", run: str = "run",
                 step: str = "step") -> Figure:
    """Each metric and the test accuracy against training step (Sparse-IFT Figure 6 style).

    One row of panels per ``group`` value (family), one column per metric (shared y per column so
    families compare), one line per run.
    """
    panels = [m for m in metrics if m in summary] + ([acc] if acc in summary else [])
    if not panels:
        raise ValueError(f"none of the columns {list(metrics) + [acc]} is in the table")
    groups = summary.groupby(summary[group].astype(str) if group in summary else "all", sort=True)
    fig = Figure(figsize=(3.3 * len(panels) + 2.6, 2.7 * len(groups) + 0.4), layout="constrained")
    axes = fig.subplots(len(groups), len(panels), squeeze=False, sharex=True, sharey="col")
    colours = mpl.colormaps["tab10"].colors
    for row, (name, sub) in zip(axes, groups):
        for k, (run_name, lines) in enumerate(sub.sort_values(step).groupby(run, sort=True)):
            style = dict(color=colours[k % 10], ls=["-", "--", ":", "-."][k // 10 % 4], marker=".")
            for ax, col in zip(row, panels):
                scale = 100.0 if col == acc else 1.0
                ax.plot(lines[step], lines[col].astype(float) * scale, label=run_name, **style)
        for ax, col in zip(row, panels):
            ax.set_ylabel(ACC_LABEL if col == acc else label(col))
            ax.grid(alpha=0.3)
        row[0].set_title(f"{group} = {name}" if group in summary else "all runs", loc="left",
                         fontsize=10)
        row[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel(label(step))
    return fig


def layer_heatmap(layers: pd.DataFrame, metric: str = "delta_r_imdb", *, run: str | None = None,
                  cmap: str = "viridis") -> Figure:
    """One run's per-layer ``metric`` over training: a layer x step image (grey = invalid, NaN)."""
    if run is None:
        runs = layers["run"].unique()
        if len(runs) != 1:
            raise ValueError(f"layers table holds {len(runs)} runs; pass run=<one of them>")
        run = runs[0]
    sub = layers[layers["run"] == run]
    if sub.empty:
        raise ValueError(f"no rows for run {run!r}")
    order = list(dict.fromkeys(sub["layer"]))
    grid = sub.pivot_table(index="layer", columns="step", values=metric, aggfunc="first",
                           dropna=False).reindex(order)
    steps = grid.columns.to_numpy()
    fig = Figure(figsize=(max(5.0, 0.25 * len(steps) + 4.5), max(3.0, 0.24 * len(order) + 1.6)),
                 layout="constrained")
    ax = fig.add_subplot()
    cm = mpl.colormaps[cmap].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(grid.to_numpy(dtype=float)), aspect="auto", cmap=cm,
                      interpolation="nearest")
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 12)).round().astype(int))
    ax.set_xticks(ticks, [str(steps[t]) for t in ticks], rotation=45, fontsize=8)
    ax.set_yticks(range(len(order)), order, fontsize=max(5, min(9, 220 // max(len(order), 1))))
    ax.set_xlabel(label("step"))
    ax.set_ylabel("Layer")
    ax.set_title(f"{run}: {label(metric)} per layer (grey = invalid)", fontsize=10)
    fig.colorbar(image, ax=ax, label=label(metric))
    return fig


SNAPSHOT_CHOICES = ("all", "epochs", "final")


def select_snapshots(summary: pd.DataFrame, which: str = "all") -> pd.DataFrame:
    """Rows of ``summary`` to draw: ``all``; ``epochs`` (init, epoch ends and final: the same points
    in every run, whatever the mask-update schedule); ``final`` (each run's last snapshot)."""
    if which not in SNAPSHOT_CHOICES:
        raise ValueError(f"unknown snapshot selection {which!r}; expected one of {SNAPSHOT_CHOICES}")
    if which == "all" or summary.empty:
        return summary
    if which == "final":
        return final_rows(summary)
    return summary[summary["snapshot_reason"].isin(["init", "epoch_end", "final"])]


def _draw_paths(ax, summary: pd.DataFrame, x: str, y: str) -> None:
    """One thin line per run through its (x, y) points in step order, an arrow on the last segment."""
    data = summary[["run", "step", x, y]].dropna()
    for _, rows in data.sort_values("step").groupby("run", sort=False):
        px, py = rows[x].to_numpy(float), rows[y].to_numpy(float)
        if len(px) < 2:
            continue
        ax.plot(px, py, "-", color="0.25", lw=0.6, alpha=0.6, zorder=2)
        ax.annotate("", xy=(px[-1], py[-1]), xytext=(px[-2], py[-2]), zorder=2,
                    arrowprops=dict(arrowstyle="->", color="0.15", lw=0.8))


def accuracy_bars(groups: pd.DataFrame, metric: str = "test_acc", scale: float = 100.0) -> Figure:
    """Final ``metric`` per (family, method) at each sparsity: mean over seeds with the 95 % t interval
    as error bars (rows of ``groups.csv``); the dense baseline as a band."""
    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    if groups.empty or f"{metric}_mean" not in groups:
        ax.set_title(f"no {metric} groups", fontsize=10)
        return fig
    mean, lo, hi = (groups[f"{metric}_{k}"].astype(float) * scale for k in ("mean", "ci_low", "ci_high"))
    dense = groups["sparsity"] == 0
    if dense.any():
        i = groups.index[dense][0]
        ax.axhline(mean[i], color="k", lw=1, label=f"dense (n={int(groups.loc[i, f'{metric}_n'])})")
        if np.isfinite(lo[i]):
            ax.axhspan(lo[i], hi[i], color="k", alpha=0.1, lw=0)
    sparse = groups[~dense]
    series = list(sparse.groupby(["family", "method"], sort=True))
    levels = sorted(sparse["sparsity"].unique())
    width = 0.8 / max(len(series), 1)
    for k, ((family, method), rows) in enumerate(series):
        pos = np.array([levels.index(v) for v in rows["sparsity"]]) - 0.4 + (k + 0.5) * width
        m = mean[rows.index].to_numpy()
        err = np.vstack([m - lo[rows.index].to_numpy(), hi[rows.index].to_numpy() - m])
        ax.errorbar(pos, m, yerr=np.nan_to_num(err), fmt="o", ms=4, capsize=3,
                    label=f"{family} / {method}")
    ax.set_xticks(range(len(levels)), [f"s = {v:g}" for v in levels])
    ax.set_ylabel(f"final {label(metric)}" if metric != "test_acc" else "Final test accuracy (%)")
    ax.set_title("Mean over seeds, 95 % t interval", fontsize=10)
    fig.legend(loc="outside right center", fontsize=7, frameon=False)
    return fig


def metric_vs_accuracy(final: pd.DataFrame, metric: str = "lambda_imsg", acc: str = "test_acc") -> Figure:
    """Final layer-mean ``metric`` against final accuracy, one point per sparse run, with Spearman ρ and
    its bootstrap 95 % interval; hollow markers: the layer mean covers fewer than all layers
    (``n_valid_<metric>`` < ``n_layers``), labelled with the count."""
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    data = final[final.get("sparsity", pd.Series(1.0, index=final.index)) > 0]
    data = data[[c for c in (metric, acc, "family", f"n_valid_{metric}", "n_layers") if c in data]]
    data = data.dropna(subset=[metric, acc])
    r = spearman_ci(data[metric], data[acc])
    for family, rows in data.groupby("family", sort=True) if "family" in data else [("runs", data)]:
        full = (rows[f"n_valid_{metric}"] >= rows["n_layers"]) if f"n_valid_{metric}" in rows else \
            pd.Series(True, index=rows.index)
        sc = ax.scatter(rows.loc[full, metric], rows.loc[full, acc] * 100, s=24, label=str(family))
        ax.scatter(rows.loc[~full, metric], rows.loc[~full, acc] * 100, s=24, facecolors="none",
                   edgecolors=sc.get_facecolor()[0])
        for _, row in rows.loc[~full].iterrows():
            ax.annotate(f"{int(row[f'n_valid_{metric}'])}/{int(row['n_layers'])}",
                        (row[metric], row[acc] * 100), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"final {label(metric)} (layer mean)")
    ax.set_ylabel("Final test accuracy (%)")
    ci = "" if not np.isfinite(r["ci_low"]) else f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
    ax.set_title(f"Spearman ρ = {r['rho']:+.2f}{ci} (bootstrap 95 %), n = {r['n']}; "
                 f"hollow: mean over k/n layers", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return fig
