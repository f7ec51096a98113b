"""Input shape and class count of each dataset sift_train knows (no data loading here)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    in_shape: tuple[int, ...]  # (channels, height, width) for images, (channels, length) for 1-D
    num_classes: int


DATASETS: dict[str, DatasetInfo] = {
    # MNIST-1D (Greydanus & Kobak 2024): 4,000 + 1,000 length-40 signals made by the mnist1d package's
    # local generator with its published defaults; the default dataset.
    "mnist1d": DatasetInfo("mnist1d", (1, 40), 10),
    # scikit-learn's bundled 8x8 digits (offline, small; every configuration reaches 98-99 %).
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
