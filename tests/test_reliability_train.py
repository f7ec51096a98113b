"""Reliability rules of training (issue 14): a run folder is never damaged, every failure is one line."""
import re

import pytest

from sift_train.__main__ import main
from sift_train.config import make_config
from sift_train.train import train


def _cfg(**kw):
    base = dict(dataset="synthetic", model="mlp", family="wide", sparsity=0.5, method="rigl",
                epochs=2, batch_size=64, update_interval=2)
    return make_config("digits", **{**base, **kw})


# ---------------------------------------------------------------- item 11: optimizer hyper-parameters
@pytest.mark.parametrize("flag, value, rule", [
    ("--lr", "nan", "lr must be a finite number > 0"),
    ("--lr", "inf", "lr must be a finite number > 0"),
    ("--lr", "0", "lr must be a finite number > 0"),
    ("--momentum", "2", r"momentum must be in \[0, 1\)"),
    ("--momentum", "1", r"momentum must be in \[0, 1\)"),
    ("--momentum", "-0.1", r"momentum must be in \[0, 1\)"),
    ("--weight-decay", "nan", "weight_decay must be a finite number >= 0"),
    ("--lr-gamma", "-1", "lr_gamma must be a finite number > 0"),
    ("--drop-fraction", "1.5", r"drop_fraction must be in \[0, 1\]"),
    ("--warmup-epochs", "nan", "warmup_epochs must be a finite number >= 0"),
])
def test_bad_optimizer_hyper_parameter_is_refused_before_anything_is_written(tmp_path, capsys, flag, value,
                                                                            rule):
    out = tmp_path / "r"
    code = main(["train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--no-progress",
                 flag, value, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(rule, err), err
    assert not out.exists()


def test_divergence_message_does_not_promise_a_checkpoint_that_does_not_exist(tmp_path):
    cfg = _cfg(lr=1e30, momentum=0.0)
    with pytest.raises(ValueError, match="training loss is nan.*no checkpoint was written yet"):
        train(cfg, tmp_path / "r", progress=False)


def _tree(folder):
    """Every file under ``folder`` with its bytes and mtime: what 'nothing touched' compares."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_exit_2(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _train_argv(out, *extra):
    return ["train", "--dataset", "synthetic", "--model", "mlp", "--family", "wide", "--sparsity", "0.5",
            "--method", "rigl", "--epochs", "2", "--batch-size", "64", "--update-interval", "2",
            "--no-progress", "--out", str(out), *extra]


# ---------------------------------------------------------------- items 1, 2: --resume never touches a foreign folder
def test_resume_refuses_folder_without_checkpoint_and_touches_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    train(_cfg(lr=0.02), run, progress=False, stop_after_epoch=1)
    for f in (run / "checkpoint").iterdir():  # another config's run copied without its checkpoint
        f.unlink()
    before = _tree(run)
    _one_line_exit_2(capsys, _train_argv(run, "--resume"), str(run), "different config", "lr")
    assert _tree(run) == before


def test_resume_refuses_a_folder_that_is_not_a_sift_run_and_touches_nothing(tmp_path, capsys):
    run = tmp_path / "photos"
    (run / "snapshots").mkdir(parents=True)
    (run / "metrics.csv").write_text("my,own\n1,2\n")
    (run / "snapshots" / "step_00000001.npz").write_bytes(b"not sift's")
    before = _tree(run)
    _one_line_exit_2(capsys, _train_argv(run, "--resume"), str(run), "not a sift run folder")
    assert _tree(run) == before


def test_resume_of_a_finished_run_of_another_config_is_refused_not_reported(tmp_path, capsys):
    run = tmp_path / "r"
    train(_cfg(epochs=1), run, progress=False)
    before = _tree(run)
    err = _one_line_exit_2(capsys, _train_argv(run, "--resume", "--epochs", "3"), "different config", "epochs")
    assert "test accuracy" not in err and _tree(run) == before


def test_restart_before_the_first_checkpoint_deletes_only_files_sift_wrote(tmp_path):
    cfg = _cfg()
    run = tmp_path / "r"
    train(cfg, run, progress=False, stop_after_epoch=1)
    for f in (run / "checkpoint").iterdir():  # same config, killed before its first checkpoint
        f.unlink()
    (run / "notes.txt").write_text("mine")
    (run / "snapshots" / "step_00000099.npz.keep").write_text("mine too")
    (run / "snapshots" / "step_00000999.npz").write_bytes(b"stale snapshot of this run")
    info = train(cfg, run, resume=True, progress=False)
    assert info == train(cfg, tmp_path / "clean", progress=False)
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "snapshots" / "step_00000099.npz.keep").read_text() == "mine too"
    assert not (run / "snapshots" / "step_00000999.npz").exists()


# ---------------------------------------------------------------- item 10: stale temporary files
def test_stale_temporary_files_are_removed_on_the_next_start(tmp_path):
    cfg = _cfg()
    run = tmp_path / "r"
    train(cfg, run, progress=False, stop_after_epoch=1)
    stale = [run / "checkpoint" / ".last.pt.k2j3h4.tmp", run / "snapshots" / ".step_00000006.npz.a1b2c3.tmp",
             run / ".done.json.zz9.tmp", run / ".metrics.csv.q1.tmp", run / ".config.json.w2.tmp"]
    for f in stale:
        f.write_bytes(b"partial")
    (run / ".mine.tmp").write_text("not a sift temporary file")
    train(cfg, run, resume=True, progress=False)
    assert not [f for f in stale if f.exists()]
    assert (run / ".mine.tmp").exists()
    assert not [p for p in run.rglob("*.tmp") if p.name != ".mine.tmp"]


# ---------------------------------------------------------------- item 9: one process per run folder
def _write_lock(run, pid, host=None):
    import json
    import socket
    (run / ".sift.lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                "token": "x"}))


def test_a_run_folder_in_use_by_a_live_process_is_refused_and_untouched(tmp_path, capsys):
    import subprocess
    import sys
    run = tmp_path / "r"
    train(_cfg(), run, progress=False, stop_after_epoch=1)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(run, owner.pid)
        before = _tree(run)
        _one_line_exit_2(capsys, _train_argv(run, "--resume"), f"in use by PID {owner.pid}")
        assert _tree(run) == before
    finally:
        owner.kill()
        owner.wait()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path, capsys):
    run = tmp_path / "r"
    train(_cfg(), run, progress=False, stop_after_epoch=1)
    _write_lock(run, 1, host="some-other-host.invalid")
    _one_line_exit_2(capsys, _train_argv(run, "--resume"), "on host some-other-host.invalid")


def test_stale_lock_of_a_killed_process_is_taken_over_with_a_message(tmp_path, capsys):
    import subprocess
    import sys
    run = tmp_path / "r"
    train(_cfg(), run, progress=False, stop_after_epoch=1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(run, dead.pid)
    assert main(_train_argv(run, "--resume")) == 0
    assert f"taking over the stale lock of PID {dead.pid}" in capsys.readouterr().err
    assert (run / "done.json").exists() and not (run / ".sift.lock").exists()


def test_the_lock_is_held_while_training_and_released_after(tmp_path, monkeypatch):
    import json
    import os

    from sift_train.rundir import RunDir
    seen = []
    save = RunDir.save_checkpoint

    def spy(self, state):
        seen.append(json.loads((self.path / ".sift.lock").read_text())["pid"])
        save(self, state)

    monkeypatch.setattr(RunDir, "save_checkpoint", spy)
    train(_cfg(), tmp_path / "r", progress=False)
    assert seen == [os.getpid()] * 2
    assert not (tmp_path / "r" / ".sift.lock").exists()


# ---------------------------------------------------------------- item 8: checkpoints that load but do not fit
def test_empty_checkpoint_is_one_line_naming_the_file_and_the_reason(tmp_path, capsys):
    run = tmp_path / "r"
    train(_cfg(), run, progress=False, stop_after_epoch=1)
    (run / "checkpoint" / "last.pt").write_bytes(b"")
    _one_line_exit_2(capsys, _train_argv(run, "--resume"), str(run / "checkpoint" / "last.pt"),
                     "empty file (0 bytes)")


@pytest.mark.parametrize("state, reason", [
    ({"epoch": 1}, "missing key 'step'"),
    ({"epoch": 1, "step": 8, "optimizer": {}, "sparse": {}}, "missing key 'model'"),
    ([1, 2], "not a dict"),
])
def test_checkpoint_of_the_wrong_structure_names_the_file_and_the_missing_key(tmp_path, capsys, state,
                                                                              reason):
    import torch
    run = tmp_path / "r"
    train(_cfg(), run, progress=False, stop_after_epoch=1)
    torch.save(state, run / "checkpoint" / "last.pt")
    _one_line_exit_2(capsys, _train_argv(run, "--resume"), str(run / "checkpoint" / "last.pt"), reason)


def test_checkpoint_of_another_model_names_the_file(tmp_path, capsys):
    import torch
    run = tmp_path / "r"
    train(_cfg(), run, progress=False, stop_after_epoch=1)
    train(_cfg(sparsity=0.75), tmp_path / "other", progress=False, stop_after_epoch=1)
    other = torch.load(tmp_path / "other" / "checkpoint" / "last.pt", weights_only=True)
    torch.save(other, run / "checkpoint" / "last.pt")
    _one_line_exit_2(capsys, _train_argv(run, "--resume"), str(run / "checkpoint" / "last.pt"),
                     "does not fit")


# ---------------------------------------------------------------- item 5: output locations
def test_out_that_is_an_existing_file_is_one_line_and_the_file_is_untouched(tmp_path, capsys):
    out = tmp_path / "r"
    out.write_text("precious")
    for extra in ((), ("--resume",)):
        _one_line_exit_2(capsys, _train_argv(out, *extra), str(out), "exists and is not a folder")
    assert out.read_text() == "precious"
    _one_line_exit_2(capsys, ["sweep", "--out", str(out), "--no-progress"], str(out), "not a folder")


def test_out_under_a_file_is_one_line_naming_that_file(tmp_path, capsys):
    (tmp_path / "f").write_text("precious")
    _one_line_exit_2(capsys, _train_argv(tmp_path / "f" / "sub" / "r"), f"{tmp_path / 'f'} is a file")
    _one_line_exit_2(capsys, ["sweep", "--out", str(tmp_path / "f" / "runs")], f"{tmp_path / 'f'} is a file")


def _deny_under(monkeypatch, folder, err):
    """Make creating anything under ``folder`` fail with ``err`` (read-only / immutable / no permission:
    the tests run as root, which permission bits do not stop)."""
    import os
    real_open, real_mkdir = os.open, os.mkdir

    def check(path):
        if str(path).startswith(str(folder)):
            raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(os, "open", lambda path, *a, **k: check(path) or real_open(path, *a, **k))
    monkeypatch.setattr(os, "mkdir", lambda path, *a, **k: check(path) or real_mkdir(path, *a, **k))


@pytest.mark.parametrize("err, name", [(30, "EROFS"), (1, "EPERM"), (13, "EACCES")])
def test_unwritable_out_is_one_line_naming_the_path_and_the_cause(tmp_path, capsys, monkeypatch, err, name):
    run = tmp_path / "r"
    train(_cfg(), run, progress=False, stop_after_epoch=1)
    before = _tree(run)
    _deny_under(monkeypatch, tmp_path, err)
    _one_line_exit_2(capsys, _train_argv(tmp_path / "new"), str(tmp_path / "new"), "cannot create the folder",
                     f"[{name}]")
    _one_line_exit_2(capsys, _train_argv(run, "--resume"), str(run / ".sift.lock"), f"[{name}]")
    assert _tree(run) == before and not (tmp_path / "new").exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root ignores permission bits (the monkeypatched variant above covers it)")
def test_read_only_folder_by_permission_bits_is_one_line(tmp_path, capsys):
    tmp_path.chmod(0o555)
    try:
        _one_line_exit_2(capsys, _train_argv(tmp_path / "r"), str(tmp_path / "r"), "[EACCES]")
    finally:
        tmp_path.chmod(0o755)


def test_full_disk_is_one_line_naming_the_file_and_leaves_nothing_half_written(tmp_path, capsys, monkeypatch):
    import errno
    import os
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 6:  # a write of the first evaluation (after the lock, config.json, metrics.csv)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = tmp_path / "r"
    err = _one_line_exit_2(capsys, _train_argv(run), f"{run}{os.sep}", "No space left on device [ENOSPC]")
    assert "cannot write" in err
    assert not list(run.rglob("*.tmp")) and not (run / ".sift.lock").exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(_train_argv(run, "--resume")) == 0  # what was written is a consistent, restartable run
    assert (run / "done.json").exists()


# ---------------------------------------------------------------- item 6: model size before allocating
def _mlp_wide_params(s, d_in=64, classes=10, hidden=256):
    """The MLP's parameters written out: fc_in, two hidden layers, fc_out, each width widened to
    round(256 / sqrt(1 - s)) (Sparse Wide, paper variant)."""
    from fractions import Fraction
    import math
    w = round(hidden * math.sqrt(1 / (1 - Fraction(repr(s)))))
    return (d_in * w + w) + 2 * (w * w + w) + (w * classes + classes)


def test_sparsity_too_close_to_one_is_refused_before_allocating_with_the_size_it_would_need(tmp_path, capsys):
    out = tmp_path / "r"
    params = _mlp_wide_params(0.9999999)  # about 6.6e9 parameters: 79 GB of weights, gradients, momentum
    err = _one_line_exit_2(capsys, ["train", "--dataset", "synthetic", "--model", "mlp", "--family", "wide",
                                    "--sparsity", "0.9999999", "--out", str(out)], f"has {params:,} parameters",
                           f"needs at least {12 * params / 2**30:,.1f} GiB", "SIFT_MEMORY_LIMIT")
    assert "mlp wide at sparsity 0.9999999" in err and not out.exists()


def test_memory_limit_override_refuses_and_admits(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIFT_MEMORY_LIMIT", "1M")
    params = _mlp_wide_params(0.5)
    _one_line_exit_2(capsys, _train_argv(tmp_path / "r"), f"has {params:,} parameters", "SIFT_MEMORY_LIMIT=1M")
    assert not (tmp_path / "r").exists()
    import torch

    from sift_train.modelsize import check_model_size
    for admit in ("none", f"{12 * params}", "2G"):
        monkeypatch.setenv("SIFT_MEMORY_LIMIT", admit)
        assert check_model_size(_cfg(), torch.device("cpu")) == params


def test_parallel_parameter_count_by_branch_formula_equals_the_built_model():
    from sift_train.modelsize import parameter_count
    from sift_train.models import build_model
    for model in ("mlp", "cnn"):
        for s in (0.9, 0.95):  # K = 10, 20: by the formula
            cfg = _cfg(model=model, family="parallel", sparsity=s)
            built = build_model(model, in_shape=(1, 8, 8), num_classes=10, family="parallel", sparsity=s,
                                device="meta")
            assert parameter_count(cfg) == sum(p.numel() for p in built.parameters())


# ---------------------------------------------------------------- item 9: sweep workers die with the sweep
def _running(pid):
    """Alive and not a zombie (an orphan's zombie may never be reaped in a container)."""
    import os
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.mark.slow
@pytest.mark.skipif(__import__("os").name != "posix", reason="getppid() of an orphan changes on POSIX only")
def test_sweep_workers_die_when_the_sweep_process_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    (tmp_path / "sleeper.py").write_text(
        "import os, time\n"
        "def report_and_sleep(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n")
    files = [tmp_path / "w0", tmp_path / "w1"]
    script = ("import sys, time, sleeper\n"
              "from sift_train.sweep import worker_pool\n"
              "pool = worker_pool(2)\n"
              f"pool.map_async(sleeper.report_and_sleep, {[str(f) for f in files]}, chunksize=1)\n"
              "time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd(),
                                                        os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 60
        while not all(f.exists() and f.read_text() for f in files):
            assert time.time() < deadline and parent.poll() is None, "workers did not start"
            time.sleep(0.1)
        workers = [int(f.read_text()) for f in files]
        assert all(_running(w) for w in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 10
    while any(_running(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if _running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived the killed sweep"


def test_sweep_refuses_a_finished_run_of_another_config_instead_of_skipping_it(tmp_path, capsys):
    from sift_train.sweep import load_sweep, sweep_configs
    name, _ = sweep_configs(load_sweep())[0]  # the default preset, as the command below
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text('{"format": "sift-run", "format_version": 1, "config": {"epochs": 99}}')
    (run / "done.json").write_text('{"step": 1, "epoch": 99, "test_acc": 0.5}')
    before = _tree(tmp_path)
    _one_line_exit_2(capsys, ["sweep", "--out", str(tmp_path), "--no-progress"], str(run), "different config")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("text, value", [("1000", 1000), ("64G", 64 * 2**30), ("1.5M", int(1.5 * 2**20)),
                                         ("2GiB", 2 * 2**30), ("none", None)])
def test_memory_limit_sizes(text, value):
    from sift_train.modelsize import parse_size
    assert parse_size(text) == value


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_memory_limit_on_cuda_is_the_gpu_memory(monkeypatch):
    import torch

    from sift_train.modelsize import memory_limit
    monkeypatch.delenv("SIFT_MEMORY_LIMIT", raising=False)
    dev = torch.device("cuda:0")
    assert memory_limit(dev)[0] == torch.cuda.mem_get_info(dev)[1]
