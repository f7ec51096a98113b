"""One atomic writer for every file sift writes (sift_graph/files.py): mode, durability, failures."""
import errno
import importlib
import os
import re
import stat
from pathlib import Path

import pytest
from runfolder import write_run

from sift_graph import files, run_analysis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_file_mode_follows_the_umask(tmp_path, umask_027):
    files.atomic_write_text(tmp_path / "a.txt", "x")
    assert _mode(tmp_path / "a.txt") == 0o640
    os.umask(0o022)
    files.atomic_write_text(tmp_path / "b.txt", "x")
    assert _mode(tmp_path / "b.txt") == 0o644


@pytest.mark.slow
def test_analysis_outputs_are_readable_by_the_group_under_umask_022(tmp_path):
    previous = os.umask(0o022)
    try:
        write_run(tmp_path / "runs", "r", steps=(0, 10, 20))
        result = run_analysis([tmp_path / "runs"], out=tmp_path / "out", jobs=1, progress=False)
    finally:
        os.umask(previous)
    written = [tmp_path / "out" / "layers.csv", tmp_path / "out" / "summary.csv",
               tmp_path / "out" / "cache" / "index.json", *result.figures,
               *(tmp_path / "out" / "cache").glob("*.json")]
    assert len(written) > 6
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(0o644) for p in written}


def test_write_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    files.atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert synced == [False, True]  # the file's data, then the folder holding the rename


def test_failed_write_names_the_file_keeps_the_old_one_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "summary.csv"
    target.write_text("old")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match=r"No space left on device: '.*summary\.csv'"):
        files.atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_one_atomic_writer_in_the_code_base():
    """No module but sift_graph/files.py creates temporary files to move into place."""
    writers = []
    for source in [*ROOT.glob("sift_graph/**/*.py"), *ROOT.glob("sift_train/**/*.py")]:
        if source.name == "files.py" and source.parent.name == "sift_graph":
            continue
        if source.relative_to(ROOT).as_posix() == "sift_train/runlock.py":
            continue  # renames a stale lock file aside to take it over; writes no file content that way
        if re.search(r"\bmkstemp\(|\bmktemp\(|TemporaryFile\(|\bos\.replace\(|\bos\.rename\(", source.read_text()):
            writers.append(source.relative_to(ROOT).as_posix())
    assert writers == []


def test_version_comes_from_the_installed_distribution(monkeypatch):
    import importlib.metadata

    import sift_graph.version as version

    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"sift": "9.8.7"}[name])
    try:
        assert importlib.reload(version).__version__ == "9.8.7"
    finally:
        monkeypatch.undo()
        importlib.reload(version)
    import sift_graph
    import sift_train
    assert sift_graph.__version__ == sift_train.__version__ == importlib.metadata.version("sift")
