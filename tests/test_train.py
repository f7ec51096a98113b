"""Training recipe, CLI and sweep."""
import json

import pytest
import torch

from sift_train.__main__ import main
from sift_train.config import TrainConfig, lr_at_epoch, make_config
from sift_train.sweep import load_sweep, parse_sweep, preset_names, run_name, run_sweep, sweep_configs
from sift_train.train import build, make_optimizer, train


def test_default_config_is_the_paper_cifar_recipe():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.nesterov, c.weight_decay) == (200, 128, 0.1, 0.9, True, 5e-4)
    assert c.milestones == (60, 120, 160) and c.lr_gamma == 0.2
    assert (c.update_interval, c.drop_fraction, c.end_fraction, c.anneal) == (100, 0.3, 0.75, "cosine")
    assert make_config(dataset="cifar100").preset == "cifar" and make_config().dataset == "mnist1d"


def test_lr_decays_at_milestones_paper_and_one_epoch_late_official():
    paper, official = TrainConfig(), TrainConfig(variant="official")
    assert [lr_at_epoch(paper, e) for e in (59, 60, 120, 160)] == pytest.approx([0.1, 0.02, 0.004, 0.0008])
    # sparse-ift.md §4: official lr 0.1 for epochs 0-60, 0.02 for 61-120, ...
    assert [lr_at_epoch(official, e) for e in (60, 61, 121, 161)] == pytest.approx([0.1, 0.02, 0.004, 0.0008])


def test_paper_excludes_bn_and_bias_from_weight_decay_official_does_not():
    for variant, n_groups in (("paper", 2), ("official", 1)):
        setup = build(make_config("digits", dataset="synthetic", variant=variant, sparsity=0.5, epochs=1))
        opt = make_optimizer(setup.cfg, setup.model)
        decayed = [p for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]]
        assert len(opt.param_groups) == n_groups
        assert any(p.dim() == 1 for p in decayed) == (variant == "official")


def test_paper_masks_have_exact_counts_official_masks_are_bernoulli():
    counts = {}
    for variant in ("paper", "official"):
        setup = build(make_config("digits", dataset="synthetic", variant=variant, family="wide",
                                  sparsity=0.75, iso_flop=False, epochs=1))
        counts[variant] = setup.sparse.masking.active_counts() == setup.sparse.targets
    assert counts == {"paper": True, "official": False}


def test_cli_train_writes_a_run(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["train", "--dataset", "synthetic", "--model", "mlp", "--family", "wide", "--sparsity",
                 "0.75", "--method", "set", "--epochs", "2", "--batch-size", "64", "--update-interval",
                 "2", "--drop-fraction", "0.5", "--lr", "0.05", "--milestones", "1", "--seed", "3",
                 "--out", str(out), "--no-progress"])
    assert code == 0 and (out / "done.json").is_file()
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["method"], cfg["update_interval"], cfg["drop_fraction"], cfg["milestones"], cfg["seed"]) == \
        ("set", 2, 0.5, [1], 3)
    assert "test accuracy" in capsys.readouterr().out


def test_cli_missing_data_dir_is_one_clear_error(tmp_path, capsys):
    code = main(["train", "--dataset", "cifar100", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "expected the file" in err and "cifar-100-python" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_rejects_unknown_method():
    with pytest.raises(SystemExit):
        main(["train", "--method", "nosuchmethod", "--out", "x"])


TINY = """
[base]
preset = "digits"
dataset = "synthetic"
model = "mlp"
epochs = 2
update_interval = 2
[grid]
family = ["wide"]
sparsity = [0.5]
method = ["static", "rigl"]
seed = [0]
"""


def test_sweep_skips_finished_runs_and_resumes_interrupted_ones(tmp_path, capsys):
    sweep = parse_sweep(TINY, "tiny.toml")
    named = sweep_configs(sweep)
    assert [n for n, _ in named] == ["mlp-dense-seed0", "mlp-wide-s0.5-static-seed0", "mlp-wide-s0.5-rigl-seed0"]
    train(named[2][1], tmp_path / named[2][0], progress=False, stop_after_epoch=1)
    first = run_sweep(sweep, tmp_path, jobs=1, progress=False)
    assert [r[1] for r in first] == ["trained", "trained", "resumed"]
    again = run_sweep(sweep, tmp_path, jobs=1, progress=False)
    assert [r[1] for r in again] == ["skipped (done)"] * 3


def test_sweep_skips_a_finished_run_only_when_its_stored_config_is_equal(tmp_path):
    run_sweep(parse_sweep(TINY.replace('["static", "rigl"]', '["static"]'), "a"), tmp_path, jobs=1,
              progress=False)
    changed = parse_sweep(TINY.replace('["static", "rigl"]', '["static"]').replace("update_interval = 2",
                                                                                "update_interval = 3"), "b")
    with pytest.raises(ValueError, match=r"different config.*mlp-dense-seed0 \(update_interval\)"):
        run_sweep(changed, tmp_path, jobs=1, progress=False)


def test_sweep_file_grid_names_every_varied_option_and_adds_dense_baselines_per_seed():
    sweep = parse_sweep("""
dense_baseline = true
[base]
preset = "mnist1d"
epochs = 3
[grid]
family = ["wide", "doped"]
sparsity = [0.9]
method = ["static", "rigl"]
seed = [0, 1]
lr = [0.05, 0.1]
""", "grid.toml")
    named = dict(sweep_configs(sweep))
    assert len(named) == 2 * 2 + 2 * 1 * 2 * 2 * 2  # dense per (seed, lr), then the grid
    cfg = named["mlp-doped-s0.9-rigl-lr0.1-seed1"]
    assert (cfg.family, cfg.sparsity, cfg.method, cfg.lr, cfg.seed, cfg.epochs) == ("doped", 0.9, "rigl", 0.1, 1, 3)
    assert named["mlp-dense-lr0.05-seed0"].sparsity == 0.0 and named["mlp-dense-lr0.05-seed0"].dataset == "mnist1d"


@pytest.mark.parametrize("text, message", [
    ("[grid]\nfamily = 'wide'", "must be a non-empty list"),
    ("[grid]\nfamilly = ['wide']", "unknown train options"),
    ("[grid]\nmethod = ['magic']", "unknown method|expected one of"),
    ("[base]\nepochs = 0", "epochs must be >= 1"),
    ("[grid\n", "not valid TOML"),
    ("seeds = [1]", "unknown top-level keys"),
])
def test_sweep_file_errors_are_one_line_and_name_the_file(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_sweep(text, "bad.toml")
    assert str(info.value).startswith("bad.toml") and "\n" not in str(info.value)


def test_shipped_presets_parse_and_the_default_is_mnist1d_with_several_seeds():
    assert {"default", "demo"} <= set(preset_names())
    demo = sweep_configs(load_sweep(preset="demo"))
    assert len(demo) == 1 + 4 * 3 * 3 and {c.dataset for _, c in demo} == {"digits"}
    default = sweep_configs(load_sweep())
    assert {c.dataset for _, c in default} == {"mnist1d"} and len({c.seed for _, c in default}) >= 3


def test_cli_sweep_reads_a_config_file(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text(TINY.replace('["static", "rigl"]', '["static"]').replace("dataset = \"synthetic\"",
                                                                         "dataset = \"synthetic\"\nepochs = 1"
                                                                         ).replace("epochs = 2\n", ""))
    assert main(["sweep", "--config", str(f), "--out", str(tmp_path / "runs"), "--jobs", "1",
                 "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mlp-dense-seed0", "mlp-wide-s0.5-static-seed0"]


def test_adam_training_keeps_inactive_weights_zero(tmp_path):
    cfg = make_config("digits", dataset="synthetic", model="cnn", family="doped", sparsity=0.75,
                      method="rigl", optimizer="adam", lr=0.01, epochs=2, batch_size=32, update_interval=3)
    train(cfg, tmp_path / "r", progress=False)
    state = torch.load(tmp_path / "r" / "checkpoint" / "last.pt", weights_only=True)["model"]
    masks = {k[: -len("_mask")]: v for k, v in state.items() if k.endswith("_mask")}
    assert masks and all(state[k][~m].abs().max() == 0 for k, m in masks.items())


def test_cli_unavailable_device_is_one_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    code = main(["train", "--dataset", "synthetic", "--device", "cuda", "--out", str(tmp_path / "r")])
    assert code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_diverging_training_stops_with_a_clear_error(tmp_path):
    cfg = make_config("digits", dataset="synthetic", model="mlp", family="wide", sparsity=0.5,
                      method="rigl", epochs=2, lr=1e6, momentum=0.0, batch_size=64)
    with pytest.raises(ValueError, match="training loss is nan"):
        train(cfg, tmp_path / "r", progress=False)


def test_erk_refuses_iso_flop_instead_of_silently_dropping_it(tmp_path):
    with pytest.raises(ValueError, match="'erk' has no Iso-FLOP search.*--iso-flop false"):
        make_config("digits", dataset="synthetic", distribution="erk", sparsity=0.9)
    cfg = make_config("digits", dataset="synthetic", model="mlp", distribution="erk", sparsity=0.9,
                      iso_flop=False, epochs=1)
    train(cfg, tmp_path / "r", progress=False)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["iso_flop"] is False
