"""Datasets: digits split, CIFAR pickles (restricted unpickler, clear errors), augmentation, batching."""
import os
import pickle

import numpy as np
import pytest
import torch

from sift_train.data import Batches, load_dataset, prepare, random_crop_flip


def _write_cifar100(root, n=12, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        obj = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
               b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
               b"coarse_labels": [0] * n, b"filenames": [b"x.png"] * n, b"batch_label": b"training"}
        (folder / split).write_bytes(pickle.dumps(obj, protocol=2))
    return obj


def test_digits_split_is_fixed_stratified_and_standardised():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.train.x.shape == (1437, 1, 8, 8) and a.test.x.shape == (360, 1, 8, 8)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)
    assert abs(float(a.train.x.mean())) < 1e-5 and abs(float(a.train.x.std()) - 1) < 1e-3
    assert torch.bincount(a.test.y).min() >= 35


def test_cifar100_reads_official_python_layout(tmp_path):
    obj = _write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.test.x.dtype == torch.uint8 and ds.test.x.shape == (12, 3, 32, 32)
    # 1024 R, then G, then B, each row-major (ecosystem.md §6)
    assert torch.equal(ds.test.x[3, 1, 2, 5], torch.tensor(obj[b"data"][3, 1024 + 2 * 32 + 5]))
    assert ds.test.y.tolist() == obj[b"fine_labels"]
    assert torch.equal(load_dataset("cifar100", tmp_path / "cifar-100-python").train.x, ds.train.x)


def test_missing_data_dir_names_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected the file .*cifar-10-batches-py.data_batch_1"):
        load_dataset("cifar10", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no --data-dir"):
        load_dataset("cifar100", None)


def test_malformed_pickle_is_rejected_with_its_path(tmp_path):
    _write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"cifar-100-python.train: not a valid cifar100"):
        load_dataset("cifar100", tmp_path)


def test_pickle_with_foreign_globals_is_never_executed(tmp_path):
    _write_cifar100(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(ValueError, match="forbidden global"):
        load_dataset("cifar100", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_crop_flip_matches_a_per_image_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 3, 6, 7)
    out = random_crop_flip(x, g, pad=2)
    g = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 5, (5,), generator=g)
    ox = torch.randint(0, 5, (5,), generator=g)
    flip = torch.rand(5, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(5):
        ref = padded[i, :, oy[i]: oy[i] + 6, ox[i]: ox[i] + 7]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)


def test_prepare_normalises_cifar_with_paper_constants(tmp_path):
    _write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path)
    x = prepare(ds.test.x[:2], ds, train=False, generator=None)
    expect = (ds.test.x[:2, 0].float() / 255 - 0.50708) / 0.26733
    assert torch.allclose(x[:, 0], expect)


def test_batches_cover_the_split_once_per_epoch_in_a_reproducible_order():
    ds = load_dataset("synthetic")
    b = Batches(ds.train, 100, shuffle=True, seed=1)
    ys = [torch.cat([y for _, y, _ in b.epoch(e)]) for e in (0, 0, 1)]
    assert len(b) == 3 and len(ys[0]) == 256
    assert torch.equal(ys[0], ys[1]) and not torch.equal(ys[0], ys[2])
    assert torch.equal(ys[0].sort().values, ds.train.y.sort().values)


def test_mnist1d_is_generated_locally_with_the_published_defaults_and_cached_as_npz(tmp_path, monkeypatch):
    import mnist1d.data
    import requests

    def no_network(*a, **k):
        raise AssertionError("MNIST-1D must not be downloaded")

    monkeypatch.setattr(requests, "get", no_network)
    ref = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())  # the package defaults, directly
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    ds = load_dataset("mnist1d", tmp_path)
    assert np.random.random() == before  # the generator's global seeding is undone
    assert ds.train.x.shape == (4000, 1, 40) and ds.test.x.shape == (1000, 1, 40)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    np.testing.assert_allclose(ds.test.x.numpy()[:, 0], ref["x_test"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ds.train.y.numpy(), ref["y"])
    # 5,000 samples, 500 per class (get_dataset_args: num_samples 5000, train_split 0.8)
    assert torch.bincount(torch.cat([ds.train.y, ds.test.y])).tolist() == [500] * 10
    cached = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(cached) == 1
    with np.load(cached[0], allow_pickle=False) as z:
        np.testing.assert_array_equal(z["x_test"].reshape(-1, 1, 40), ds.test.x.numpy())
    monkeypatch.setattr(mnist1d.data, "make_dataset", no_network)  # second load: from the cache
    again = load_dataset("mnist1d", tmp_path)
    assert torch.equal(again.train.x, ds.train.x)


def test_unreadable_mnist1d_cache_is_one_clear_error(tmp_path):
    load_dataset("mnist1d", tmp_path)
    f = next(tmp_path.glob("mnist1d-*.npz"))
    f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable MNIST-1D cache"):
        load_dataset("mnist1d", tmp_path)
