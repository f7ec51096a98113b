"""load_run against docs/run-format.md: round trip, ordering, and one clear error per bad file."""
import json

import numpy as np
import pytest
from runfolder import random_tensors, write_run, write_snapshot

from sift_graph import RunFormatError, load_run


def test_round_trip_returns_written_masks_and_weights(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,))
    tensors = random_tensors({"a.weight": (5, 3, 3, 3), "b.weight": (7, 13)}, 0.3, seed=1)
    write_snapshot(run, 30, tensors, test_acc=None, reason="final")
    snap = load_run(run).snapshots[-1]
    assert (snap.step, snap.test_acc, snap.reason, snap.tensors) == (30, None, "final",
                                                                       ("a.weight", "b.weight"))
    loaded = snap.load()
    for name, (mask, weight) in tensors.items():
        assert loaded[name][0].dtype == bool and loaded[name][1].dtype == np.float32
        np.testing.assert_array_equal(loaded[name][0], mask)
        np.testing.assert_array_equal(loaded[name][1], weight)
        assert np.all(loaded[name][1][~mask] == 0)


def test_snapshots_ordered_by_step_and_config_exposed(tmp_path):
    run = load_run(write_run(tmp_path, "myrun", steps=(200, 0, 100000000, 30)))
    assert [s.step for s in run.snapshots] == [0, 30, 200, 100000000]
    assert run.name == "myrun" and run.config["family"] == "wide"
    assert run.meta["format_version"] == 1 and list(run.metrics.columns)[:2] == ["step", "epoch"]


def test_missing_config_names_the_file(tmp_path):
    run = write_run(tmp_path, "r")
    (run / "config.json").unlink()
    with pytest.raises(RunFormatError, match=r"config\.json: missing"):
        load_run(run)


def test_unknown_format_version_refused(tmp_path):
    run = write_run(tmp_path, "r")
    meta = json.loads((run / "config.json").read_text())
    meta["format_version"] = 99
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(RunFormatError, match=r"config\.json: unknown format_version 99"):
        load_run(run)


def test_truncated_snapshot_named(tmp_path):
    run = write_run(tmp_path, "r")
    bad = run / "snapshots" / "step_00000010.npz"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(RunFormatError, match=r"step_00000010\.npz: corrupt or truncated"):
        load_run(run)
    partial = load_run(run, strict=False)
    assert [s.step for s in partial.snapshots] == [0, 20]
    assert len(partial.problems) == 1 and "step_00000010.npz" in partial.problems[0]


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def test_mask_length_mismatch_with_shape_named(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,))
    file = run / "snapshots" / "step_00000000.npz"
    _rewrite(file, **{"conv2.weight/shape": np.array([12, 8, 3, 4], dtype=np.int64)})
    with pytest.raises(RunFormatError, match=r"step_00000000\.npz: tensor conv2\.weight: mask has"):
        load_run(run).snapshots[0].load()


def test_values_count_mismatch_named(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,))
    file = run / "snapshots" / "step_00000000.npz"
    _rewrite(file, **{"fc.weight/values": np.ones(3, dtype=np.float32)})
    with pytest.raises(RunFormatError, match=r"tensor fc\.weight: 3 values for \d+ active"):
        load_run(run).snapshots[0].load()


def test_nan_weights_refused(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,))
    file = run / "snapshots" / "step_00000000.npz"
    with np.load(file) as npz:
        values = npz["conv1.weight/values"].copy()
    values[2] = np.nan
    _rewrite(file, **{"conv1.weight/values": values})
    with pytest.raises(RunFormatError, match=r"tensor conv1\.weight: NaN"):
        load_run(run).snapshots[0].load()


def test_meta_step_must_match_file_name(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,))
    file = run / "snapshots" / "step_00000000.npz"
    file.rename(run / "snapshots" / "step_00000005.npz")
    with pytest.raises(RunFormatError, match=r"step_00000005\.npz: meta step 0 does not match"):
        load_run(run)


def test_pickled_arrays_are_not_loaded(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,))
    file = run / "snapshots" / "step_00000000.npz"
    _rewrite(file, **{"fc.weight/values": np.array([object()], dtype=object)})
    with pytest.raises(RunFormatError, match=r"step_00000000\.npz"):
        load_run(run).snapshots[0].load()


def test_non_numeric_metrics_value_refused_by_file_column_and_row(tmp_path):
    run = write_run(tmp_path, "r", steps=(0, 10))
    text = (run / "metrics.csv").read_text().replace("\n10,", "\nten,")
    (run / "metrics.csv").write_text(text)
    with pytest.raises(RunFormatError, match=r"metrics\.csv: column step, row 2: 'ten' is not a number"):
        load_run(run)


@pytest.mark.parametrize("entry", [[12, 8], {"shape": [12, -8]}, {"shape": "12x8"}, {"shape": [True]}])
def test_malformed_sparse_tensors_shape_refused(tmp_path, entry):
    run = write_run(tmp_path, "r", steps=(0,))
    meta = json.loads((run / "config.json").read_text())
    meta["sparse_tensors"]["fc.weight"] = entry
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(RunFormatError, match=r"config\.json: sparse_tensors fc\.weight: shape must be"):
        load_run(run)


def test_deeply_nested_meta_is_a_format_error_not_a_recursion_crash(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,))
    file = run / "snapshots" / "step_00000000.npz"
    _rewrite(file, meta=np.array("[" * 100_000))
    with pytest.raises(RunFormatError, match=r"step_00000000\.npz: meta is not valid JSON"):
        load_run(run)


def test_one_snapshot_per_step(tmp_path):
    run = write_run(tmp_path, "r", steps=(0, 10))
    second = run / "snapshots" / "step_000000010.npz"  # 9 digits: the same step 10
    second.write_bytes((run / "snapshots" / "step_00000010.npz").read_bytes())
    partial = load_run(run, strict=False)
    assert [s.step for s in partial.snapshots] == [0, 10]
    assert len(partial.problems) == 1 and ": step 10 already has step_0" in partial.problems[0]
