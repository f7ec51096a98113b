"""Stage 1: the run folders under the PATHs, and the label each gets in the tables.

A run folder is any folder holding a ``config.json``; the search does not descend into it. Symlinked
folders are followed, each real folder once: a link back to an enclosing folder (a loop) or a second
link to a folder already seen is reported as a note and not followed again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Discovery:
    """Run folders found (in search order), and one line per problem / note met on the way."""

    runs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_runs(paths) -> Discovery:
    """Every folder holding a ``config.json`` under ``paths`` (a path may itself be a run).

    Real folders are searched before symlinked ones, so a run reachable both ways is found (and
    labelled) at its real place. Folders named ``snapshots`` holding ``.npz`` files but no
    ``config.json`` next to them are reported as problems; unreadable folders too.
    """
    found = Discovery()
    seen: dict[tuple[int, int], Path] = {}
    for root in map(Path, paths):
        folders, links = [(root, ())], []
        while folders or links:
            folder, ancestors = folders.pop() if folders else links.pop(0)
            try:
                st = folder.stat()
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                found.problems.append(f"{folder}: cannot list the folder ({exc.strerror or exc})")
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                found.notes.append(f"{folder}: symlink loop (points back to {seen[key]}), not followed")
                continue
            if key in seen:
                found.notes.append(f"{folder}: same folder as {seen[key]}, analysed once")
                continue
            seen[key] = folder
            names = {e.name for e in entries}
            if "config.json" in names:
                found.runs.append(folder)
                continue
            if folder.name == "snapshots" and any(n.endswith(".npz") for n in names):
                found.problems.append(f"{folder.parent / 'config.json'}: missing (folder has snapshots)")
                continue
            children = [e for e in entries if _is_folder(e)]
            links.extend((Path(e.path), (*ancestors, key)) for e in children if e.is_symlink())
            folders.extend((Path(e.path), (*ancestors, key)) for e in reversed(children) if not e.is_symlink())
    return found


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def run_labels(runs: list[Path]) -> dict[Path, str]:
    """Folder names if unique, else paths relative to the runs' common parent (as found, links kept)."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return dict(zip(runs, names))
    absolute = [Path(os.path.abspath(r)) for r in runs]
    base = Path(os.path.commonpath(absolute)).parent
    return {r: a.relative_to(base).as_posix() for r, a in zip(runs, absolute)}
