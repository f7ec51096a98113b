"""Input shape and class count of each dataset sift_train knows (no data loading here)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    in_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int


DATASETS: dict[str, DatasetInfo] = {
    # scikit-learn's bundled 8x8 digits: the default that runs anywhere offline.
    "digits": DatasetInfo("digits", (1, 8, 8), 10),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10),
    "cifar100": DatasetInfo("cifar100", (3, 32, 32), 100),
    # random tensors with the digits layout, for tests.
    "synthetic": DatasetInfo("synthetic", (1, 8, 8), 10),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None
