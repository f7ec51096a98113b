"""Train options from a TOML file: a recipe or sweep file in the ``sweep --config`` format
(``sift_train/presets/*.toml``): ``[base]`` holds train options; ``[grid]`` lists values per option.

``train --config FILE`` takes ``[base]`` and every ``[grid]`` option with a single value; an option the
grid varies must be chosen on the command line (``--family wide``). Command-line flags override the file.
"""
from __future__ import annotations

from dataclasses import fields
from importlib import resources
from pathlib import Path

from .config import TrainConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

_FIELDS = {f.name for f in fields(TrainConfig)}


def read_toml(path: str | Path) -> dict:
    """The TOML document of ``path`` or of the shipped preset named ``path`` (one-line errors)."""
    p = Path(path)
    if not p.is_file() and not p.suffix:
        shipped = resources.files("sift_train.presets").joinpath(f"{path}.toml")
        if shipped.is_file():
            return tomllib.loads(shipped.read_text())
    try:
        return tomllib.loads(p.read_text())
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML ({exc})") from None


def train_options(path: str | Path, chosen: set[str] = frozenset()) -> dict:
    """``TrainConfig`` overrides of one run from ``path``; ``chosen`` are options set by flags."""
    doc = read_toml(path)
    base, grid = doc.get("base", {}), doc.get("grid", {})
    if not isinstance(base, dict) or not isinstance(grid, dict):
        raise ValueError(f"{path}: [base] and [grid] must be tables")
    unknown = sorted(k for k in (*base, *grid) if k not in _FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown train options {unknown}")
    out = dict(base)
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if len(values) == 1:
            out[key] = values[0]
        elif key not in chosen:
            raise ValueError(f"{path}: [grid] {key} has {len(values)} values {values}; train runs one, "
                             f"choose it with --{key.replace('_', '-')} (or run sweep --config)")
    if "milestones" in out:
        out["milestones"] = tuple(out["milestones"])
    return out
