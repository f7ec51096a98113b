"""Stage 2: read and validate the run folders; a bad run or snapshot is one problem line, not an abort."""
from __future__ import annotations

from pathlib import Path

from ..runs import Run, RunFormatError, load_run


def load_runs(folders: list[Path], max_snapshot_bytes: int | None) -> tuple[list[Run], list[str]]:
    """The readable runs (bad snapshots left out) and one line per run or snapshot left out."""
    runs, problems = [], []
    for folder in folders:
        try:
            run = load_run(folder, strict=False, max_snapshot_bytes=max_snapshot_bytes)
        except RunFormatError as exc:
            problems.append(str(exc))
            continue
        except OSError as exc:
            problems.append(f"{folder}: unreadable ({exc})")
            continue
        problems.extend(run.problems)
        runs.append(run)
    return runs, problems
