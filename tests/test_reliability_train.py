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
    cfg = _cfg(lr=1e6, momentum=0.0)
    with pytest.raises(ValueError, match="training loss is nan.*no checkpoint was written yet"):
        train(cfg, tmp_path / "r", progress=False)
