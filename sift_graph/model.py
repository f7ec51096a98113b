"""Model level: one tidy row of metrics per sparse layer, and the mean over layers.

Spec: ``../shared/specs/metrics.md`` §9.4 (aggregation) and §2.1 (which layers).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .checkpoints import MASK_SUFFIX, layers_from_state_dict
from .layer import layer_metrics, masked_layer_metrics
from .validation import check_mask

__all__ = ["model_metrics", "aggregate_layers", "layers_from_state_dict", "MASK_SUFFIX"]

#: Columns that identify a row rather than measure it; never averaged.
ID_COLUMNS = ("run", "step", "epoch", "layer", "shape", "reason", "test_acc", "seed")
#: Metrics whose count of defined (non-NaN) layers :func:`aggregate_layers` reports.
COUNTED_METRICS = ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg", "delta_s", "imdb", "imdb_norm", "narc")


def _normalise(layers: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    if not isinstance(layers, Mapping):
        raise ValueError(f"layers: expected a mapping name -> (mask, weight) or a state dict, "
                         f"got {type(layers).__name__}")
    if any(isinstance(k, str) and k.endswith(MASK_SUFFIX) for k in layers):
        return layers_from_state_dict(layers)
    out = {}
    for name, value in layers.items():
        if isinstance(value, (tuple, list)):
            if len(value) not in (1, 2):
                raise ValueError(f"layer {name!r}: expected (mask, weight), got a sequence of {len(value)}")
            out[name] = (value[0], value[1] if len(value) == 2 else None)
        else:
            out[name] = (value, None)
    return out


def layer_row(name: str, mask: Any, weight: Any, *, convention: str, device: str = "cpu",
              values: np.ndarray | None = None) -> dict:
    """One tidy row: ``layer``, ``shape`` (e.g. ``"64x64x3x3"``), ``density`` (mask nonzeros / size),
    then every key of :func:`sift_graph.layer_metrics` on ``device`` (``reason`` last). ``values``
    instead of ``weight``: the weights at the mask's nonzeros (:func:`masked_layer_metrics`)."""
    m = check_mask(mask)
    if values is None:
        metrics = layer_metrics(m, weight, convention=convention, device=device)
    else:
        metrics = masked_layer_metrics(m, values, convention=convention, device=device)
    active = np.count_nonzero(m) if values is None else values.size  # one value per active entry
    return {"layer": name, "shape": "x".join(str(s) for s in m.shape), "density": float(active) / m.size,
            **metrics}


def model_metrics(layers: Mapping[str, Any], *, convention: str = "hoang2023a") -> pd.DataFrame:
    """Metrics of every sparse layer of a model, one row per layer (tidy).

    Parameters
    ----------
    layers : mapping
        One of
        * ``{name: (mask, weight)}`` (``weight`` may be ``None``), e.g. what
          ``sift_graph.load_run(...).snapshots[i].load()`` returns;
        * ``{name: mask}``: masks only (no weighted metrics);
        * a ``state_dict()``: every ``<param>_mask`` entry with its weight ``<param>`` or
          ``<param>_orig`` (see :func:`layers_from_state_dict`); the layer is named ``<param>``.
        Masks and weights are numpy arrays or torch tensors in PyTorch layout; order is kept.
    convention : {"hoang2023a", "hoang2023b"}

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``shape`` (e.g. ``"64x64x3x3"``), ``density`` (mask nonzeros / size),
        every key of :func:`sift_graph.layer_metrics`, and ``reason`` last.

    Raises
    ------
    ValueError
        Bad input in a layer; the message starts with the layer's name.
    """
    rows = []
    for name, (mask, weight) in _normalise(layers).items():
        try:
            rows.append(layer_row(str(name), mask, weight, convention=convention))
        except ValueError as exc:
            raise ValueError(f"layer {name!r}: {exc}") from exc
    return pd.DataFrame(rows)


def aggregate_layers(df: pd.DataFrame, *, invalid: str = "skip", columns=None) -> dict:
    """Mean of each metric over the layers of one model/checkpoint (metrics.md §9.4).

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of :func:`model_metrics` (extra columns such as ``run``/``step`` are ignored).
    invalid : {"skip", "zero"}
        ``"skip"`` (default): mean over the layers where the metric is defined (NaN excluded);
        for one checkpoint this is hoang2023b's treatment (None rows skipped). ``"zero"``: an
        undefined value counts as 0, as the reference analysis does
        (``lth_tickets_analysis.py:280-282`` maps inf → 0; hoang2023a returns 0 for empty K);
        this reproduces hoang2023a's layer means wherever a layer is invalid.
    columns : list of str, optional
        Columns to average; default every numeric column except identifiers (``layer``,
        ``shape``, ``reason``, ``run``, ``step``, ``epoch``, ``test_acc``, ``seed``).

    Returns
    -------
    dict
        ``{column: mean}`` (NaN if no layer defines it under ``"skip"``), ``n_layers``,
        ``n_valid`` (layers with an empty ``reason``) and ``n_valid_<m>`` (layers where metric
        ``m`` is defined) for the main metrics present.
    """
    if invalid not in ("skip", "zero"):
        raise ValueError(f"invalid: expected 'skip' or 'zero', got {invalid!r}")
    if columns is None:
        columns = [c for c in df.select_dtypes("number").columns if c not in ID_COLUMNS]
    values = df[list(columns)].astype(float)
    if invalid == "zero":
        values = values.fillna(0.0)
    out: dict = {c: (float(values[c].mean()) if len(values) else float("nan")) for c in columns}
    out["n_layers"] = int(len(df))
    out["n_valid"] = int((df["reason"] == "").sum()) if "reason" in df else int(len(df))
    for m in COUNTED_METRICS:
        if m in df:
            out[f"n_valid_{m}"] = int(df[m].notna().sum())
    return out
