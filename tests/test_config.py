"""TrainConfig validates every field once, at construction, with one-line errors; names come from the
registries (models, datasets, families, methods), so a newly registered name is accepted."""
import pytest

from sift_train.config import TrainConfig
from sift_train.datasets import DATASETS, DatasetInfo
from sift_train.methods import METHODS, Static


@pytest.mark.parametrize("field, value", [
    ("model", "vgg"), ("dataset", "imagenet"), ("family", "sparse_wide"), ("method", "gmp"),
    ("variant", "released"), ("distribution", "er"), ("anneal", "linear"), ("optimizer", "lamb"),
])
def test_unknown_name_is_one_line_error_naming_field_and_choices(field, value):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    msg = str(err.value)
    assert msg.startswith(f"unknown {field} {value!r}; expected one of [") and "\n" not in msg


@pytest.mark.parametrize("s", [1.0, -0.1, float("nan"), 2])
def test_sparsity_outside_zero_one_rejected_by_the_one_validator(s):
    with pytest.raises(ValueError, match=r"^TrainConfig: sparsity must be in \[0, 1\)"):
        TrainConfig(sparsity=s)


def test_names_registered_later_are_accepted(monkeypatch):
    monkeypatch.setitem(DATASETS, "tiny", DatasetInfo("tiny", (1, 4, 4), 3))
    monkeypatch.setitem(METHODS, "frozen", Static)
    cfg = TrainConfig(dataset="tiny", method="frozen")
    assert (cfg.dataset, cfg.method) == ("tiny", "frozen")
