"""``python -m sift_train describe``: table, JSON contract, user errors."""
import json

import pytest

from sift_train.__main__ import main


def _json(capsys, *args):
    assert main(["describe", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_contract_keys_and_spec_numbers(capsys):
    d = _json(capsys, "--model", "resnet18", "--dataset", "cifar100", "--family", "wide",
              "--sparsity", "0.9", "--variant", "official")
    # spec §5: Sparse Wide s=0.9, code's search stop
    assert d["total_params"] == 111_347_550 and d["sparse_params"] == 111_150_096
    assert d["active_params"] == 11_188_723 and d["flops"] == 1_102_284_676
    assert d["dense_flops"] == 1_110_937_700 and d["profiler_flops"] == 1_115_842_219
    assert round(d["mask_sparsity"], 6) == 0.901113 and len(d["tensor_sparsity"]) == 19
    assert sum(layer["params"] for layer in d["layers"]) == d["total_params"]


def test_json_paper_variant_is_iso_flop(capsys):
    d = _json(capsys, "--model", "cnn", "--dataset", "digits", "--family", "factorized",
              "--sparsity", "0.75")
    assert abs(d["flops"] / d["dense_flops"] - 1) < 1e-4 and d["iso_flop_searched"]


def test_table_lists_layers_and_totals(capsys):
    assert main(["describe", "--model", "mlp", "--dataset", "digits", "--family", "parallel",
                 "--sparsity", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "hidden.0.branches.1" in out and "fc_in" in out
    assert "FLOPs (2xMAC)" in out and "mask sparsity" in out


@pytest.mark.parametrize("args, message", [
    (["--sparsity", "1.0"], "sparsity must be in [0, 1)"),
    (["--sparsity", "-0.2"], "sparsity must be in [0, 1)"),
])
def test_bad_sparsity_is_one_line_error(capsys, args, message):
    assert main(["describe", "--model", "cnn", "--dataset", "digits", "--family", "wide", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_family_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["describe", "--family", "huge"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'huge'" in err and "Traceback" not in err
