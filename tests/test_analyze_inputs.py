"""analyze on bad and unusual inputs: one line per bad snapshot or run, sizes checked before
allocating, symlinks followed once, one figure per run, unfinished runs marked, and exit codes
0 (all analysed), 1 (inputs skipped), 2 (usage error, before any work), 3 (a crash of sift)."""
import json
import os
import re
import tracemalloc
import zipfile

import numpy as np
import pandas as pd
import pytest
from runfolder import random_tensors, write_run, write_snapshot

from sift_graph import RunFormatError, load_run
from sift_graph.__main__ import main
from sift_graph.analysis.figures import file_slugs
from sift_graph.pipeline import run_analysis

MiB = 1 << 20


def _analyze(*args):
    return main(["analyze", *map(str, args), "--jobs", "1", "--no-figures", "--quiet"])


def _set_meta(file, meta_json: str) -> None:
    with np.load(file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["meta"] = np.array(meta_json)
    np.savez(file, **arrays)


def _skipped(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("skipped: ")]


@pytest.mark.parametrize("meta, rule", [
    ('{"step": 10, "epoch": null, "tensors": []}', "meta epoch must be a finite number >= 0, got null"),
    ('{"step": "abc", "epoch": 1.0, "tensors": []}', 'meta step must be an integer >= 0, got "abc"'),
    ('{"step": 10, "epoch": 1.0, "tensors": 5}', "meta tensors must be a list of tensor names, got 5"),
    ('[10, 1.0]', "meta must be a JSON object, got list"),
    ('{"step": 10, "epoch": 1.0, "tensors": [], "test_acc": "high"}', "meta test_acc must be a finite"),
])
def test_wrongly_typed_meta_is_one_skipped_line_rest_analysed_exit_1(tmp_path, capsys, meta, rule):
    run = write_run(tmp_path / "runs", "r", steps=(0, 10, 20))
    bad = run / "snapshots" / "step_00000010.npz"
    _set_meta(bad, meta)
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "out") == 1
    skipped = _skipped(capsys.readouterr().err)
    assert skipped == [f"skipped: {bad}: {rule}" + skipped[0].split(rule, 1)[1]]
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["step"].tolist() == [0, 20]
    partial = load_run(run, strict=False)
    assert [s.step for s in partial.snapshots] == [0, 20] and rule in partial.problems[0]
    with pytest.raises(RunFormatError, match="step_00000010.npz: meta"):
        load_run(run)


def _huge_header_snapshot(file, shape):
    """A snapshot whose fc.weight/values header claims ``shape`` float32 but holds 12 bytes."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + b"\0" * 12
    with zipfile.ZipFile(file, "a") as zf:
        zf.writestr("fc.weight/values.npy", member)


def _members(file):
    with np.load(file, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_array_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path, capsys):
    run = write_run(tmp_path / "runs", "r", steps=(0, 10))
    file = run / "snapshots" / "step_00000010.npz"
    arrays = _members(file)
    del arrays["fc.weight/values"]
    np.savez(file, **arrays)
    _huge_header_snapshot(file, (4_000_000_000,))
    tracemalloc.start()
    code = _analyze(tmp_path / "runs", "--out", tmp_path / "out")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    skipped = _skipped(capsys.readouterr().err)
    assert code == 1 and len(skipped) == 1 and str(file) in skipped[0]
    assert "header claims shape (4000000000,)" in skipped[0]
    assert peak < 64 * MiB


def test_decompression_bomb_is_refused_without_inflating_it(tmp_path, capsys):
    run = write_run(tmp_path / "runs", "r", steps=(0, 10))
    file = run / "snapshots" / "step_00000010.npz"
    arrays = _members(file)
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            if key != "fc.weight/values":
                with zf.open(f"{key}.npy", "w") as f:
                    np.lib.format.write_array(f, value, allow_pickle=False)
        with zf.open("fc.weight/values.npy", "w", force_zip64=True) as f:  # 128 MiB of zeros
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (32 * MiB,)})
            for _ in range(32):
                f.write(bytes(4 * MiB))
    assert file.stat().st_size < MiB
    tracemalloc.start()
    code = _analyze(tmp_path / "runs", "--out", tmp_path / "out")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    skipped = _skipped(capsys.readouterr().err)
    assert code == 1 and len(skipped) == 1
    assert f"{file}: snapshot would take" in skipped[0] and "over the limit of" in skipped[0]
    assert peak < 32 * MiB


def test_snapshot_limit_derived_from_config_and_overridable(tmp_path, capsys):
    run = write_run(tmp_path / "runs", "r", steps=(0, 10))
    config = json.loads((run / "config.json").read_text())
    config["sparse_tensors"] = {"fc.weight": {"shape": [10, 12]}}  # declares far smaller tensors
    (run / "config.json").write_text(json.dumps(config))
    big = random_tensors({"fc.weight": (300, 1000)}, 0.5, seed=0)
    write_snapshot(run, 10, big)
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "a") == 1
    assert "step_00000010.npz: snapshot would take" in capsys.readouterr().err
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "b", "--max-snapshot-bytes", 64 * MiB) == 0


def test_symlinked_run_folders_are_followed_once(tmp_path, capsys):
    elsewhere = write_run(tmp_path / "elsewhere", "linked-run", steps=(0, 10))
    write_run(tmp_path / "runs", "real-run", steps=(0, 10))
    (tmp_path / "runs" / "link").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "runs" / "again").symlink_to(tmp_path / "runs" / "real-run", target_is_directory=True)
    (tmp_path / "runs" / "sub").mkdir()
    (tmp_path / "runs" / "sub" / "loop").symlink_to(tmp_path / "runs", target_is_directory=True)
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "out") == 0
    captured = capsys.readouterr()
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert sorted(summary["run"].unique()) == ["link", "real-run"] and len(summary) == 4
    assert "symlink loop" in captured.err and "2 runs, 4 snapshots" in captured.out


def test_snapshots_that_is_a_file_is_reported(tmp_path, capsys):
    write_run(tmp_path / "runs", "ok", steps=(0,))
    broken = write_run(tmp_path / "runs", "broken", steps=())
    (broken / "snapshots").write_text("not a folder")
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "out") == 1
    skipped = _skipped(capsys.readouterr().err)
    assert skipped == [f"skipped: {broken / 'snapshots'}: not a folder (snapshots/ must be a folder "
                       "of step_XXXXXXXX.npz files)"]


def test_figure_file_names_are_unique_per_run():
    labels = ["run+1", "run 1", "run_1", "Run_1", "a/b", "a_b", "wide-rigl.s0.9"]
    slugs = file_slugs(labels)
    assert len(set(slugs.values())) == len(labels)
    assert len({s.lower() for s in slugs.values()}) == len(labels)  # also on case-insensitive disks
    assert slugs["wide-rigl.s0.9"] == "wide-rigl.s0.9" and slugs["a_b"] == "a_b"  # safe names kept
    assert slugs == file_slugs(reversed(labels))  # stable: a run's name does not depend on order
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", s) for s in slugs.values())


@pytest.mark.slow
def test_every_run_gets_its_own_layer_figure(tmp_path):
    for name in ("run+1", "run 1"):
        write_run(tmp_path / "runs", name, steps=(0, 10))
    result = run_analysis([tmp_path / "runs"], out=tmp_path / "out", jobs=1, progress=False)
    layer_figures = {p.name for p in result.figures if p.name.startswith("layers_")}
    assert len(layer_figures) == 2


def test_summary_marks_unfinished_runs(tmp_path):
    done = write_run(tmp_path / "runs", "done", steps=(0, 10))
    (done / "done.json").write_text('{"step": 10, "epoch": 1.0, "test_acc": 0.4}')
    write_run(tmp_path / "runs", "running", steps=(0, 10))
    run_analysis([tmp_path / "runs"], out=tmp_path / "out", jobs=1, figures=False, progress=False)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.groupby("run")["finished"].unique().to_dict() == {"done": [True], "running": [False]}


@pytest.mark.parametrize("option, message", [
    (["--layer-metric", "nope"], "unknown layer metric for hoang2023a 'nope'"),
    (["--convention", "hoang2023b", "--layer-metric", "lambda"], "unknown layer metric for hoang2023b"),
    (["--device", "tpu"], "device: expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
])
def test_bad_option_refused_before_any_work_exit_2(tmp_path, capsys, option, message):
    write_run(tmp_path / "runs", "r", steps=(0, 10))
    assert main(["analyze", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--quiet", *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_refused_before_any_work(tmp_path, capsys):
    write_run(tmp_path / "runs", "r", steps=(0,))
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "out", "--device", "cuda") == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_output_folder_that_is_a_file_is_one_line_exit_2(tmp_path, capsys):
    write_run(tmp_path / "runs", "r", steps=(0,))
    (tmp_path / "out").write_text("a file")
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "out" / "analysis") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'out'}: exists and is not a folder (output folder {tmp_path / 'out' / 'analysis'})"


def test_crash_of_sift_is_exit_3_with_the_traceback_in_a_file(tmp_path, capsys, monkeypatch):
    write_run(tmp_path / "runs", "r", steps=(0,))

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("sift_graph.pipeline.build_tables", broken)
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "out") == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: sift crashed (KeyError: 'a bug')")
    report = err.split("traceback in ", 1)[1].split(";", 1)[0]
    assert "Traceback" in open(report).read() and "build_tables" not in err
    os.unlink(report)
    assert _analyze(tmp_path / "runs", "--out", tmp_path / "out", "--debug") == 3
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize("convention", ["hoang2023a", "hoang2023b"])
def test_layer_metric_choices_are_the_numeric_columns_of_layers_csv(tmp_path, convention):
    from sift_graph.analysis.options import layer_metric_columns

    write_run(tmp_path / "runs", "r", steps=(0,))
    layers = run_analysis([tmp_path / "runs"], out=tmp_path / "out", jobs=1, figures=False,
                          progress=False, convention=convention).layers
    numeric = set(layers.select_dtypes("number").columns) - {"step", "epoch"}
    assert set(layer_metric_columns(convention)) == numeric
