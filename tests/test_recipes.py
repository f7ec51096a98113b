"""Shipped recipe files (sift_train/presets/*.toml) and ``train --config``."""
import json

import pytest

from sift_train.__main__ import main
from sift_train.config import make_config
from sift_train.recipes import train_options


def _config(name, **flags):
    options = train_options(name, set(flags))
    return make_config(options.pop("preset", None), **{**options, **flags})


def test_paper_recipe_file_is_the_cifar100_resnet18_recipe():
    cfg = _config("paper-cifar100-resnet18", family="parallel", sparsity=0.9)
    # sparse-ift.md §4, written out here rather than taken from TrainConfig's defaults
    assert (cfg.dataset, cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.nesterov) == \
        ("cifar100", "resnet18", 200, 128, 0.1, 0.9, True)
    assert (cfg.weight_decay, cfg.milestones, cfg.lr_gamma, cfg.lr_schedule, cfg.warmup_epochs) == \
        (5e-4, (60, 120, 160), 0.2, "step", 0)
    assert (cfg.method, cfg.update_interval, cfg.drop_fraction, cfg.end_fraction, cfg.amp) == \
        ("rigl", 100, 0.3, 0.75, "off")
    assert cfg == make_config("cifar", family="parallel", sparsity=0.9)


def test_imagenet_style_recipe_scales_lr_linearly_with_warmup_and_cosine():
    cfg = _config("imagenet-style", family="wide", sparsity=0.5)
    assert cfg.lr == pytest.approx(0.256 * cfg.batch_size / 256)
    assert (cfg.batch_size, cfg.lr_schedule, cfg.warmup_epochs, cfg.amp, cfg.epochs) == \
        (1024, "cosine", 5, "bf16", 90)


def test_options_the_grid_varies_must_be_chosen(tmp_path):
    with pytest.raises(ValueError, match=r"\[grid\] family has 4 values.*--family"):
        train_options("paper-cifar100-resnet18")
    bad = tmp_path / "bad.toml"
    bad.write_text("[base]\nlearning_rate = 0.1\n")
    with pytest.raises(ValueError, match="unknown train options \\['learning_rate'\\]"):
        train_options(bad)


def test_cli_train_config_file_with_flags_overriding(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[base]\npreset = "digits"\ndataset = "synthetic"\nmodel = "mlp"\nepochs = 3\n'
                      'lr_schedule = "cosine"\n[grid]\nfamily = ["wide", "doped"]\nsparsity = [0.5]\n')
    code = main(["train", "--config", str(recipe), "--family", "doped", "--epochs", "1", "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert (cfg["family"], cfg["sparsity"], cfg["epochs"], cfg["lr_schedule"], cfg["model"]) == \
        ("doped", 0.5, 1, "cosine", "mlp")
