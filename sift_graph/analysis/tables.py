"""Stage 5: ``layers.csv`` (one row per run, snapshot and layer) and ``summary.csv`` (one row per run
and snapshot: layer means, ``specs/metrics.md`` §9.4). Columns: ``docs/analyze.md``."""
from __future__ import annotations

import pandas as pd

from ..model import aggregate_layers
from ..runs import Run, Snapshot


def _test_acc(run: Run, snap: Snapshot) -> float:
    """The snapshot's own test accuracy, else ``metrics.csv``'s at the same step, else NaN."""
    if snap.test_acc is not None:
        return snap.test_acc
    rows = run.metrics[run.metrics["step"] == snap.step]["test_acc"].dropna()
    return float(rows.iloc[-1]) if len(rows) else float("nan")


def _config_columns(config: dict, taken) -> dict:
    return {k: v for k, v in config.items()
            if k not in taken and (v is None or isinstance(v, (str, int, float, bool)))}


def build_tables(runs: list[Run], labels: dict, results: dict, invalid: str,
                 layers: str = "sparse") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(layers, summary)`` of every snapshot with rows in ``results`` ``{(label, step): rows}``;
    the layer means are over the rows of the chosen ``layers`` mode, recorded in the ``layers`` column."""
    layer_frames, summary_rows = [], []
    for run in runs:
        label = labels[run.path]
        for snap in run.snapshots:
            rows = results.get((label, snap.step))
            if rows is None:
                continue
            ids = {"run": label, "step": snap.step, "epoch": snap.epoch}
            frame = pd.DataFrame([{**ids, **r} for r in rows])
            layer_frames.append(frame)
            summary = {**ids, "test_acc": _test_acc(run, snap), "snapshot_reason": snap.reason,
                       "layers": layers,
                       **aggregate_layers(frame, invalid=invalid)}
            summary.update(_config_columns(run.config, summary))
            summary["finished"] = run.finished
            summary["run_path"] = str(run.path)
            summary_rows.append(summary)
    layers = pd.concat(layer_frames, ignore_index=True) if layer_frames else pd.DataFrame()
    return layers, pd.DataFrame(summary_rows)
