"""Stage 6: the figures of an analysis (``docs/analyze.md`` § Figures), their file names, and a note
for each figure that could not be drawn in full (reported as data, never read back from a figure)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from .. import plots

#: Layer-mean metrics of each convention (``specs/metrics.md`` §9.1) drawn as trajectories.
TRAJECTORY_METRICS = {
    "hoang2023a": ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg"),
    "hoang2023b": ("delta_r", "delta_s", "imdb", "imdb_norm", "narc"),
}
#: (x, y, file tag) of the Pareto-curvature heatmaps (``specs/metrics.md`` §7: both pairs).
HEATMAP_PAIRS = (("delta_r_imdb", "lambda_imsg", "imdb-imsg"), ("delta_r", "lambda", "full"))
GROUP_KEYS = ("family", "method")
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _short_hash(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:8]


def file_slug(label: str) -> str:
    """A file-name part for ``label``: the label itself when it is already a safe name, else its safe
    characters plus 8 hex digits of its sha256 (so ``run+1`` and ``run 1`` never share a file)."""
    if _SAFE.fullmatch(label):
        return label
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-")[:80] or "run"
    return f"{slug}-{_short_hash(label)}"


def file_slugs(labels) -> dict[str, str]:
    """:func:`file_slug` of each label; a safe label that another equals up to case (``Run``, ``run``:
    one file on a case-insensitive file system) gets the hash too."""
    slugs = {label: file_slug(label) for label in dict.fromkeys(labels)}
    folded: dict[str, int] = {}
    for slug in slugs.values():
        folded[slug.lower()] = folded.get(slug.lower(), 0) + 1
    return {label: f"{slug}-{_short_hash(label)}" if slug == label and folded[slug.lower()] > 1 else slug
            for label, slug in slugs.items()}


def _groups(summary: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(file label, title, rows): all runs, then one group per family/method."""
    keys = [k for k in GROUP_KEYS if k in summary]
    groups = [("all", "All runs", summary)]
    if keys:
        for values, rows in summary.groupby(keys, dropna=False, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            title = " / ".join(f"{k}={v}" for k, v in zip(keys, values))
            groups.append(("-".join(map(str, values)), title, rows))
    return groups


def write_figures(layers: pd.DataFrame, summary: pd.DataFrame, folder: Path, *, convention: str,
                  fmt: str, layer_metric: str) -> tuple[list[Path], list[str]]:
    """Heatmaps (all runs + per family/method), trajectories and one layer heatmap per run, written to
    ``folder``; returns the files written and one note per figure drawn without its surface or left out."""
    figures, notes = [], []
    folder.mkdir(parents=True, exist_ok=True)
    groups = _groups(summary)
    group_slugs = file_slugs(name for name, _, _ in groups)
    for x, y, tag in HEATMAP_PAIRS:
        if x not in summary or y not in summary:
            missing = " or ".join(c for c in (x, y) if c not in summary)
            notes.append(f"no {tag} heatmap: convention {convention} has no {missing}")
            continue
        for name, title, rows in groups:
            surface = plots.heatmap_surface(rows, x, y)
            if len(surface.z) == 0:
                notes.append(f"no {tag} heatmap for {title}: no snapshot defines {x}, {y} and test_acc")
                continue
            if surface.problem:
                notes.append(f"heatmap {tag}: {title} ({len(surface.z)} snapshots; {surface.problem})")
            fig = plots.pareto_heatmap(rows, x=x, y=y, title=title, surface=surface)
            figures.append(plots.save(fig, folder / f"pareto_{tag}_{group_slugs[name]}.{fmt}"))
    metrics = [m for m in TRAJECTORY_METRICS[convention] if m in summary]
    figures.append(plots.save(plots.trajectories(summary, metrics=metrics), folder / f"trajectories.{fmt}"))
    figures += _seed_figures(summary, folder, fmt, metrics)
    run_slugs = file_slugs(summary["run"])
    for run in summary["run"].unique():
        if layers.empty or not (layers["run"] == run).any():
            notes.append(f"no layer heatmap for {run}: it has no sparse tensors")
            continue
        fig = plots.layer_heatmap(layers, metric=layer_metric, run=run)
        figures.append(plots.save(fig, folder / f"layers_{layer_metric}_{run_slugs[run]}.{fmt}"))
    return figures, notes


def _seed_figures(summary: pd.DataFrame, folder: Path, fmt: str, metrics) -> list[Path]:
    """Final accuracy with seed error bars, and each metric against final accuracy (Spearman ρ, CI)."""
    from ..stats import final_rows, group_table

    if not {"family", "sparsity", "method"} <= set(summary.columns):
        return []
    out = [plots.save(plots.accuracy_bars(group_table(summary)), folder / f"accuracy_groups.{fmt}")]
    final = final_rows(summary)
    for m in metrics:
        out.append(plots.save(plots.metric_vs_accuracy(final, m), folder / f"{m}_vs_accuracy.{fmt}"))
    return out
