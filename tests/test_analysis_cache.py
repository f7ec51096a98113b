"""The analysis cache: keyed on content and metric code, never on path, size or a stale index."""
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from runfolder import write_run

from sift_graph.analysis import cache
from sift_graph.pipeline import run_analysis

PACKAGE = Path(cache.__file__).resolve().parent.parent
HOUR_NS = 3600 * 10**9


def _quick(runs, out):
    return run_analysis([runs], out=out, jobs=1, figures=False, progress=False)


def _rewrite_same_size(file: Path) -> None:
    """New weights of the same count (uncompressed npz: same size), mtime set back to the old one."""
    st = file.stat()
    with np.load(file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["fc.weight/values"] = arrays["fc.weight/values"][::-1] * 3.0 + 1.0
    np.savez(file, **arrays)
    assert file.stat().st_size == st.st_size
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_same_size_rewrite_is_recomputed(tmp_path):
    run = write_run(tmp_path / "runs", "r", steps=(0, 10, 20))
    old = time.time_ns() - HOUR_NS  # older than the racy window: the index records every file
    for file in (run / "snapshots").iterdir():
        os.utime(file, ns=(old, old))
    first = _quick(tmp_path / "runs", tmp_path / "out")
    _rewrite_same_size(run / "snapshots" / "step_00000010.npz")
    second = _quick(tmp_path / "runs", tmp_path / "out")
    assert (second.computed, second.cached) == (1, 2)
    before = first.layers.set_index(["step", "layer"])["lambda"]
    after = second.layers.set_index(["step", "layer"])["lambda"]
    assert after[(10, "fc.weight")] != before[(10, "fc.weight")]
    assert after.drop(index=10, level="step").equals(before.drop(index=10, level="step"))


def test_same_content_at_another_path_is_a_cache_hit(tmp_path):
    write_run(tmp_path / "runs", "r", steps=(0, 10, 20))
    _quick(tmp_path / "runs", tmp_path / "out")
    shutil.move(tmp_path / "runs" / "r", tmp_path / "runs" / "moved")
    again = _quick(tmp_path / "runs", tmp_path / "out")
    assert (again.computed, again.cached) == (0, 3)


def test_cache_entry_names_the_metric_code(tmp_path, monkeypatch):
    write_run(tmp_path / "runs", "r", steps=(0, 10))
    _quick(tmp_path / "runs", tmp_path / "out")
    entries = sorted(p.name for p in (tmp_path / "out" / "cache").glob("*.hoang2023a.*.json"))
    assert len(entries) == 2 and all(e.endswith(f".{cache.metric_code_id()}.json") for e in entries)
    monkeypatch.setattr(cache, "metric_code_id", lambda: "0123456789ab")
    changed = _quick(tmp_path / "runs", tmp_path / "out")
    assert (changed.computed, changed.cached) == (2, 0)


@pytest.fixture
def package_copy(tmp_path):
    copy = tmp_path / "sift_graph"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize("module, changes_key", [
    ("hoang2023a.py", True), ("spectral.py", True), ("runs.py", True), ("model.py", True),
    ("plots.py", False), ("pipeline.py", False), ("cli_analyze.py", False), ("cli_metrics.py", False),
])
def test_metric_code_id_changes_with_the_metric_code_only(package_copy, module, changes_key):
    before = cache.code_id(package_copy)
    with open(package_copy / module, "a") as f:
        f.write("\n# edited\n")
    assert (cache.code_id(package_copy) != before) == changes_key


def test_index_entry_with_unchanged_size_but_other_signature_is_rehashed(tmp_path):
    file = tmp_path / "a.npz"
    file.write_bytes(b"one")
    store = cache.SnapshotCache(tmp_path / "cache", "hoang2023a")
    first = store.key(file)
    st = file.stat()
    file.write_bytes(b"two")
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.key(file) != first


def test_each_snapshot_is_read_once_when_computed_and_not_at_all_when_indexed(tmp_path, monkeypatch):
    """A cold analysis reads every snapshot file once (look-up hashes nothing; the compute stage
    hashes the bytes it decodes); a second one finds them all in the index and reads none."""
    write_run(tmp_path / "runs", "r", steps=(0, 10, 20))
    monkeypatch.setattr(cache, "RACY_NS", 0)  # the files' ctime is now: let the index keep them
    reads = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or read_bytes(self))
    monkeypatch.setattr(cache, "file_sha256", lambda path: pytest.fail("look-up hashed a snapshot"))
    first = _quick(tmp_path / "runs", tmp_path / "out")
    assert (first.computed, first.cached) == (3, 0)
    assert sorted(n for n in reads if n.endswith(".npz")) == ["step_00000000.npz", "step_00000010.npz",
                                                              "step_00000020.npz"]
    reads.clear()
    second = _quick(tmp_path / "runs", tmp_path / "out")
    assert (second.computed, second.cached) == (0, 3)
    assert not [n for n in reads if n.endswith(".npz")]
    assert second.layers.equals(first.layers)
