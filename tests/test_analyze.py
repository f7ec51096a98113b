"""``sift_graph.analyze`` and ``python -m sift_graph analyze`` on run folders built in the test."""
import math
import os

import numpy as np
import pandas as pd
import pytest
from runfolder import random_tensors, write_run, write_snapshot

import sift_graph
from sift_graph import load_run
from sift_graph.__main__ import main
from sift_graph.pipeline import run_analysis

LAYER_COLUMNS = ["run", "step", "epoch", "layer", "shape", "density", "delta_r", "delta_r_imdb",
                 "lambda", "lambda_imsg", "reason"]
SUMMARY_COLUMNS = ["run", "step", "epoch", "test_acc", "delta_r", "delta_r_imdb", "lambda", "lambda_imsg",
                   "family", "sparsity", "method"]


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "wide-rigl", family="wide", method="rigl", seed=1)
    write_run(root / "nested", "parallel-set", family="parallel", method="set", seed=2)
    return root


def _quick(paths, out, **kw):
    return run_analysis(paths, out=out, jobs=1, figures=False, progress=False, **kw)


def test_tables_have_one_row_per_layer_and_per_snapshot(runs, tmp_path):
    layers, summary = sift_graph.analyze([runs], out=tmp_path / "out", jobs=1, figures=False,
                                         progress=False)
    assert len(layers) == 2 * 3 * 3 and len(summary) == 2 * 3
    assert set(LAYER_COLUMNS) <= set(layers.columns)
    assert set(SUMMARY_COLUMNS) <= set(summary.columns)
    assert sorted(summary["run"].unique()) == ["parallel-set", "wide-rigl"]
    assert layers.groupby(["run", "step"]).size().eq(3).all()
    on_disk = pd.read_csv(tmp_path / "out" / "layers.csv", keep_default_na=False, na_values=[""])
    assert len(on_disk) == len(layers) and list(on_disk.columns) == list(layers.columns)
    assert len(pd.read_csv(tmp_path / "out" / "summary.csv")) == len(summary)
    row = layers[(layers.run == "wide-rigl") & (layers.layer == "conv2.weight")].iloc[0]
    assert row["shape"] == "12x8x3x3" and row["density"] == pytest.approx(round(0.5 * 864) / 864)


def test_metrics_equal_layer_metrics_on_the_same_arrays(runs, tmp_path):
    layers = _quick([runs], tmp_path / "out").layers
    run = load_run(runs / "nested" / "parallel-set")
    for snap in run.snapshots:
        for name, (mask, weight) in snap.load().items():
            expected = sift_graph.layer_metrics(mask, weight, convention="hoang2023a")
            row = layers[(layers.run == "parallel-set") & (layers.step == snap.step)
                         & (layers.layer == name)].iloc[0]
            for key, value in expected.items():
                if isinstance(value, str):
                    assert row[key] == value
                else:
                    assert (math.isnan(value) and math.isnan(row[key])) or row[key] == float(value), key


def test_summary_is_aggregate_of_layers_with_test_accuracy(runs, tmp_path):
    result = _quick([runs], tmp_path / "out", invalid="zero")
    for (run, step), frame in result.layers.groupby(["run", "step"]):
        row = result.summary[(result.summary.run == run) & (result.summary.step == step)].iloc[0]
        expected = sift_graph.aggregate_layers(frame, invalid="zero")
        for key in ("delta_r", "lambda_imsg"):
            assert row[key] == pytest.approx(expected[key], nan_ok=True)
    wide = result.summary[result.summary.run == "wide-rigl"].sort_values("step")
    assert wide["test_acc"].tolist() == pytest.approx([0.3, 0.4, 0.5])
    assert set(wide["family"]) == {"wide"} and set(wide["sparsity"]) == {0.5}


def test_test_accuracy_falls_back_to_metrics_csv(tmp_path):
    run = write_run(tmp_path, "r", steps=(0,), accs=[0.25])
    write_snapshot(run, 0, random_tensors({"fc.weight": (10, 12)}, 0.5, 0), test_acc=None)
    assert _quick([run], tmp_path / "out").summary["test_acc"].tolist() == [0.25]


def test_second_analyze_computes_nothing(runs, tmp_path):
    first = _quick([runs], tmp_path / "out")
    second = _quick([runs], tmp_path / "out")
    assert (first.computed, first.cached) == (6, 0)
    assert (second.computed, second.cached) == (0, 6)
    pd.testing.assert_frame_equal(first.layers, second.layers)
    pd.testing.assert_frame_equal(first.summary, second.summary)


def test_modified_snapshot_recomputed_and_touched_unchanged_one_is_not(runs, tmp_path):
    _quick([runs], tmp_path / "out")
    run = runs / "wide-rigl"
    write_snapshot(run, 10, random_tensors({"fc.weight": (10, 12)}, 0.3, seed=99), test_acc=0.9)
    os.utime(run / "snapshots" / "step_00000020.npz")  # new mtime, same content
    result = _quick([runs], tmp_path / "out")
    assert (result.computed, result.cached) == (1, 5)
    changed = result.layers[(result.layers.run == "wide-rigl") & (result.layers.step == 10)]
    assert changed["layer"].tolist() == ["fc.weight"]


def test_growing_run_computes_only_new_snapshots(runs, tmp_path):
    _quick([runs], tmp_path / "out")
    write_snapshot(runs / "wide-rigl", 30, random_tensors({"fc.weight": (10, 12)}, 0.5, seed=5))
    result = _quick([runs], tmp_path / "out")
    assert (result.computed, result.cached) == (1, 6) and len(result.summary) == 7


@pytest.mark.slow
def test_parallel_workers_give_the_serial_tables(runs, tmp_path):
    serial = _quick([runs], tmp_path / "a")
    parallel = run_analysis([runs], out=tmp_path / "b", jobs=2, figures=False, progress=False)
    assert parallel.computed == 6
    pd.testing.assert_frame_equal(serial.layers, parallel.layers)


def test_bad_inputs_reported_by_file_rest_analysed_exit_1(runs, tmp_path, capsys):
    broken = write_run(runs, "broken", steps=(0, 10, 20))
    (broken / "snapshots" / "step_00000010.npz").write_bytes(b"PK\x03\x04 truncated")
    nan_file = broken / "snapshots" / "step_00000020.npz"
    tensors = random_tensors({"fc.weight": (10, 12)}, 0.5, 0)
    tensors["fc.weight"][1][tensors["fc.weight"][0]] = np.nan
    write_snapshot(broken, 20, tensors)
    orphan = write_run(runs, "orphan", steps=(0,))
    (orphan / "config.json").unlink()
    badcfg = write_run(runs, "badcfg", steps=(0,))
    (badcfg / "config.json").write_text("{not json")
    code = main(["analyze", str(runs), "--out", str(tmp_path / "out"), "--jobs", "1", "--no-figures",
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    skipped = [line for line in err if line.startswith("skipped: ")]
    assert len(skipped) == 4
    assert any("step_00000010.npz: corrupt or truncated" in s for s in skipped)
    assert any("step_00000020.npz: tensor fc.weight: NaN" in s for s in skipped)
    assert any(f"{orphan / 'config.json'}: missing" in s for s in skipped)
    assert any(f"{badcfg / 'config.json'}: not valid JSON" in s for s in skipped)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(summary) == 6 + 1 and "broken" in set(summary.run)


def test_clean_folder_exits_0_with_default_output_folder(runs, capsys):
    assert main(["analyze", str(runs), "--jobs", "1", "--no-figures", "--quiet"]) == 0
    assert (runs / "sift-analysis" / "summary.csv").is_file()
    assert "6 snapshots (6 computed, 0 cached), 0 skipped" in capsys.readouterr().out


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nope", "no such file or directory"),
    (lambda p: p, "no run folders"),
])
def test_user_errors_one_line_exit_2(tmp_path, capsys, make, message):
    assert main(["analyze", str(make(tmp_path)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_figures_written_and_non_empty(runs, tmp_path):
    result = run_analysis([runs], out=tmp_path / "out", jobs=1, progress=False)
    names = sorted(p.name for p in result.figures)
    assert {"pareto_imdb-imsg_all.png", "pareto_full_all.png", "pareto_imdb-imsg_wide-rigl.png",
            "pareto_full_parallel-set.png", "trajectories.png",
            "layers_delta_r_imdb_wide-rigl.png", "layers_delta_r_imdb_parallel-set.png"} <= set(names)
    for path in result.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.slow
def test_svg_format(runs, tmp_path):
    result = run_analysis([runs / "wide-rigl"], out=tmp_path / "out", jobs=1, progress=False, fmt="svg")
    assert result.figures and all(p.suffix == ".svg" and b"<svg" in p.read_bytes()[:500]
                                  for p in result.figures)


def test_hoang2023b_convention_tables(runs, tmp_path):
    result = _quick([runs], tmp_path / "out", convention="hoang2023b")
    assert {"delta_r", "delta_s", "imdb", "imdb_norm", "narc", "reason"} <= set(result.layers.columns)
    assert len(result.summary) == 6


@pytest.mark.slow
def test_degenerate_group_drawn_with_note_not_crash(tmp_path, capsys):
    run = write_run(tmp_path / "runs", "two-points", steps=(0, 10))
    code = main(["analyze", str(run), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "note: heatmap imdb-imsg: All runs (2 snapshots; fewer than 3" in err
    assert (tmp_path / "out" / "figures" / "pareto_imdb-imsg_all.png").stat().st_size > 5000


@pytest.mark.slow
def test_dense_run_without_sparse_tensors_is_summarised_without_layer_heatmap(tmp_path):
    write_run(tmp_path / "runs", "sparse", steps=(0, 10, 20, 30))
    write_run(tmp_path / "runs", "dense", steps=(0, 10), shapes={}, family="dense", sparsity=0.0)
    result = run_analysis([tmp_path / "runs"], out=tmp_path / "out", jobs=1, progress=False)
    assert not result.problems
    assert set(result.summary["run"]) == {"sparse", "dense"}
    assert set(result.layers["run"]) == {"sparse"}
    names = {p.name for p in result.figures}
    assert "layers_delta_r_imdb_sparse.png" in names
    assert not any("dense" in n and n.startswith(("layers_", "pareto_")) for n in names)
    assert any("dense" in note for note in result.notes)
