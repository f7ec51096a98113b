"""How a training process enters its run folder (``docs/training.md``, "Resuming and failures").

:func:`plan_start` decides, reading only, whether ``out`` is started fresh, resumed from its checkpoint,
restarted (a run of the same config stopped before its first checkpoint) or already done, and refuses
everything else with one line: a non-empty folder without ``--resume``, and with ``--resume`` any folder
that is not a sift run of the same config (checkpoint and ``done.json`` or not). :func:`open_run` then
creates the folder, takes its lock (:mod:`sift_train.runlock`), decides again under the lock and removes
the temporary files a killed writer left behind.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from .config import TrainConfig
from .outdir import OutputError, prepare_folder, writing
from .rundir import FORMAT, FORMAT_VERSION, RunDir
from .runlock import LOCK_NAME, RunLock

# temporary files of the atomic writes of a run folder: ".<final name>.<random>.tmp"
_TEMP = re.compile(r"^\.(config\.json|metrics\.csv|done\.json|last\.pt|step_\d+\.npz)\..+\.tmp$")
_SUBFOLDERS = ("snapshots", "masks", "checkpoint")
IGNORED_FIELDS = ("data_dir",)  # where the data lies does not change the run


def _is_leftover(name: str) -> bool:
    return name == LOCK_NAME or bool(_TEMP.match(name))


def _holds_nothing(run: RunDir) -> bool:
    """Nothing but what sift leaves before writing ``config.json``: its empty subfolders, temporary
    files of interrupted writes and a lock file."""
    if not run.path.is_dir():
        return True
    with writing(run.path, "cannot read the folder"):
        for entry in run.path.iterdir():
            if _is_leftover(entry.name):
                continue
            if entry.name in _SUBFOLDERS and entry.is_dir() and not entry.is_symlink() \
                    and all(_is_leftover(e.name) for e in entry.iterdir()):
                continue
            return False
    return True


def saved_config(run: RunDir) -> TrainConfig:
    """The config a sift run folder was written with; ``ValueError`` naming ``config.json`` otherwise."""
    file = run.path / "config.json"
    if not file.is_file():
        raise ValueError(f"{run.path}: not a sift run folder (no config.json); --resume continues only an "
                         f"interrupted run of the same config")
    meta = run.read_config()
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{file}: not a sift run config (no \"format\": \"{FORMAT}\" with a \"config\" object)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{file}: run format version {meta.get('format_version')!r}; this sift writes "
                         f"version {FORMAT_VERSION}")
    try:
        return TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: invalid run config ({exc})") from None


def plan_start(run: RunDir, cfg: TrainConfig, resume: bool) -> str:
    """``"fresh"``, ``"resume"``, ``"restart"`` or ``"done"`` for training ``cfg`` into ``run``; reads
    only. Raises ``ValueError`` (one line) for every folder that must not be touched."""
    if run.path.exists() and not run.path.is_dir():
        raise OutputError(f"{run.path}: exists and is not a folder")
    if _holds_nothing(run):
        return "fresh"
    if not resume:
        if run.done:
            raise ValueError(f"{run.path}: run already finished (done.json); choose another --out")
        raise ValueError(f"{run.path}: folder exists and is not empty; pass --resume to continue it")
    saved = saved_config(run).to_dict()
    diff = sorted(k for k, v in cfg.to_dict().items() if saved.get(k) != v and k not in IGNORED_FIELDS)
    if diff:
        raise ValueError(f"{run.path}: --resume with a different config (fields {', '.join(diff)}); "
                         f"nothing was changed")
    if run.done:
        return "done"
    return "resume" if run.has_checkpoint else "restart"


def remove_leftovers(run: RunDir) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes (only while holding the run's lock)."""
    removed = []
    for folder in (run.path, *(run.path / s for s in _SUBFOLDERS)):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if _TEMP.match(entry.name) and entry.is_file():
                with writing(entry, "cannot remove a stale temporary file"):
                    entry.unlink()
                removed.append(entry)
    return removed


@contextmanager
def open_run(run: RunDir, cfg: TrainConfig, resume: bool):
    """Check (nothing touched on refusal), create the folder, hold its lock for the block, and yield
    :func:`plan_start`'s answer decided again under the lock, after stale temporary files are removed."""
    if plan_start(run, cfg, resume) == "done":  # reading done.json needs no lock (nor a writable folder)
        yield "done"
        return
    prepare_folder(run.path)
    with RunLock(run.path):
        start = plan_start(run, cfg, resume)
        remove_leftovers(run)
        yield start
