"""Datasets as in-memory tensors, batching with a reproducible order, and the paper's augmentation.

* ``mnist1d``: MNIST-1D made by the ``mnist1d`` package's generator (``make_dataset`` with
  ``get_dataset_args()``, the published defaults; never its pickle download), cached as
  ``mnist1d-<hash of the arguments>.npz`` in ``data_dir`` or the cache folder (:func:`cache_dir`).
* ``digits``: scikit-learn's bundled 8x8 digits (ships inside the wheel, runs offline).
* ``cifar10`` / ``cifar100``: the official *python* pickles in ``data_dir`` (no torchvision), read with
  a restricted unpickler that only admits the builtins and numpy reconstruction the files need.
* ``synthetic``: random tensors with the digits layout, for tests.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .datasets import dataset_info
from sift_graph.files import atomic_write_bytes

# Sparse-IFT CIFAR-100 normalisation (sparse-ift.md §4, DATA:112-135).
CIFAR100_MEAN, CIFAR100_STD = (0.50708, 0.48655, 0.44092), (0.26733, 0.25644, 0.27615)
# CIFAR-10 (the constants commonly used with the same pipeline, e.g. kuangliu/pytorch-cifar).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "labels", "cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", "cifar-100-python.tar.gz"),
}


@dataclass
class Split:
    """``x``: float32 (N, C, H, W) (uint8 for CIFAR, normalised per batch); ``y``: int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    augment: bool  # random crop 4 + horizontal flip on training batches (CIFAR)
    mean: tuple[float, ...] | None = None  # per-channel; set for uint8 images
    std: tuple[float, ...] | None = None


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    """Load ``name`` (see module docstring); raises ValueError/FileNotFoundError with one-line messages."""
    dataset_info(name)  # validates the name
    if name == "mnist1d":
        return _mnist1d(data_dir)
    if name == "digits":
        return _digits()
    if name == "synthetic":
        return _synthetic(seed)
    return _cifar(name, data_dir)


def cache_dir() -> Path:
    """``$SIFT_CACHE`` if set, else ``$XDG_CACHE_HOME/sift`` (``~/.cache/sift``)."""
    if os.environ.get("SIFT_CACHE"):
        return Path(os.environ["SIFT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sift"


def mnist1d_arrays(data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """``{x, y, x_test, y_test}`` of MNIST-1D with the package defaults, from the ``.npz`` cache or
    generated (about 2 s) and cached atomically. The generator's global seeding is undone afterwards."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # only the download uses it; sift never downloads
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(data_dir) if data_dir is not None else cache_dir()
    path = folder / f"mnist1d-{key}.npz"
    names = ("x", "y", "x_test", "y_test")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in names}
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: unreadable MNIST-1D cache ({exc}); delete it to regenerate") from None
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    out = {"x": data["x"].astype(np.float32), "y": data["y"].astype(np.int64),
           "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64)}
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **out)
    atomic_write_bytes(path, buf.getvalue())
    return out


def _mnist1d(data_dir) -> Dataset:
    """4,000 training and 1,000 test signals of length 40 (already standardised by the generator),
    shaped ``(N, 1, 40)`` for Conv1d."""
    a = mnist1d_arrays(data_dir)

    def split(x, y):
        return Split(torch.from_numpy(x).reshape(-1, 1, x.shape[-1]), torch.from_numpy(y))

    return Dataset("mnist1d", split(a["x"], a["y"]), split(a["x_test"], a["y_test"]), augment=False)


def _digits() -> Dataset:
    """1,797 8x8 images; fixed stratified 80/20 split (random_state 0), standardised with the
    training mean and std of all pixels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    mean, std = xtr.mean(), xtr.std()

    def split(a, b):
        return Split(torch.tensor((a - mean) / std, dtype=torch.float32).reshape(-1, 1, 8, 8),
                     torch.tensor(b, dtype=torch.int64))

    return Dataset("digits", split(xtr, ytr), split(xte, yte), augment=False)


def _synthetic(seed: int) -> Dataset:
    """Linearly separable-ish random data: class templates plus noise (256 train, 64 test)."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(10, 1, 8, 8, generator=g)

    def split(n):
        y = torch.randint(0, 10, (n,), generator=g)
        return Split(templates[y] + 0.8 * torch.randn(n, 1, 8, 8, generator=g), y)

    return Dataset("synthetic", split(256), split(64), augment=False)


def _cifar(name: str, data_dir) -> Dataset:
    folder, train_files, test_files, label_key, tarball = _CIFAR[name]
    if data_dir is None:
        raise FileNotFoundError(
            f"{name}: no --data-dir given; expected a folder holding {folder}/ (extracted from {tarball})"
        )
    root = Path(data_dir)
    base = root if root.name == folder else root / folder

    def read(files):
        xs, ys = [], []
        for f in files:
            x, y = _read_cifar_pickle(base / f, label_key, name, tarball)
            xs.append(x)
            ys.append(y)
        return Split(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))

    mean, std = (CIFAR100_MEAN, CIFAR100_STD) if name == "cifar100" else (CIFAR10_MEAN, CIFAR10_STD)
    return Dataset(name, read(train_files), read(test_files), augment=True, mean=mean, std=std)


class _CifarUnpickler(pickle.Unpickler):
    """Admit only what the CIFAR python pickles use: numpy array reconstruction and ``_codecs.encode``."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if module == "_codecs":
            import _codecs
            return _codecs.encode
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def _read_cifar_pickle(path: Path, label_key: str, name: str, tarball: str):
    """``(uint8 (N, 3, 32, 32), int64 (N,))`` from one official CIFAR python batch file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{name}: expected the file {path} (the python version of {name}, extracted from {tarball})"
        )
    try:
        obj = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        if not isinstance(obj, dict):
            raise ValueError("not a dict")
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
        data = np.asarray(obj["data"], dtype=np.uint8)
        labels = np.asarray(obj[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ValueError(f"data shape {data.shape}, {len(labels)} labels; expected (N, 3072), N labels")
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a valid {name} python batch file ({exc})") from None
    return data.reshape(-1, 3, 32, 32), labels


class Batches:
    """Mini-batches of a split in a per-epoch permutation drawn from ``seed`` and the epoch number, so
    the order of every epoch is reproducible without saving loader state (resume)."""

    def __init__(self, split: Split, batch_size: int, shuffle: bool, seed: int = 0):
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed

    def __len__(self) -> int:
        return -(-len(self.split.y) // self.batch_size)

    def epoch(self, epoch: int):
        """Yield ``(x, y, generator)``; the generator drives this epoch's augmentation."""
        n = len(self.split.y)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i: i + self.batch_size]
            yield self.split.x[idx], self.split.y[idx], g


def prepare(x: torch.Tensor, ds: Dataset, train: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Float batch for the model: uint8 images are cropped/flipped (training) and normalised."""
    if x.dtype != torch.uint8:
        return x
    x = x.float().div_(255.0)
    if train and ds.augment:
        x = random_crop_flip(x, generator)
    mean = torch.tensor(ds.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(ds.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """torchvision ``RandomCrop(H, padding=4)`` (zero padding, before normalisation) then
    ``RandomHorizontalFlip()``, per image, with torch ops (sparse-ift.md §4)."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.arange(w).expand(b, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + ox[:, None]
    rows = torch.arange(h)[None, :] + oy[:, None]
    bi = torch.arange(b)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
