"""Device batches: prefetching in a background thread changes nothing; each rank gets its share."""
import pytest
import torch

from sift_train.data import Batches, Dataset, Split
from sift_train.distributed import Dist
from sift_train.loader import DeviceLoader, _prefetched


def _cifar_like(n=50):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    split = Split(x, torch.arange(n) % 10)
    return Dataset("fake", split, split, augment=True, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def _epoch(loader, epoch=1):
    return [(x.clone(), y.clone(), n) for x, y, n in loader.epoch(epoch)]


def test_prefetched_batches_are_bit_identical_to_inline_ones():
    ds = _cifar_like()
    cpu = torch.device("cpu")
    inline = _epoch(DeviceLoader(Batches(ds.train, 16, True, seed=3), ds, cpu, Dist(), prefetch=0))
    ahead = _epoch(DeviceLoader(Batches(ds.train, 16, True, seed=3), ds, cpu, Dist(), prefetch=3))
    assert [n for *_, n in inline] == [16, 16, 16, 2]
    for (xa, ya, _), (xb, yb, _) in zip(inline, ahead, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert inline[0][0].dtype == torch.float32  # cropped, flipped and normalised


def test_each_rank_gets_its_contiguous_share_of_the_global_batch():
    ds = _cifar_like()
    cpu = torch.device("cpu")
    whole = _epoch(DeviceLoader(Batches(ds.train, 16, True), ds, cpu, Dist(), prefetch=0))
    shares = [_epoch(DeviceLoader(Batches(ds.train, 16, True), ds, cpu, Dist(r, 2, r), prefetch=2))
              for r in (0, 1)]
    for i, (x, y, n) in enumerate(whole):
        assert torch.equal(torch.cat([shares[0][i][0], shares[1][i][0]]), x)
        assert torch.equal(torch.cat([shares[0][i][1], shares[1][i][1]]), y)
        assert shares[0][i][2] == shares[1][i][2] == n


def test_an_error_in_the_prefetch_thread_reaches_the_consumer():
    def items():
        yield 1
        raise OSError("disk gone")

    it = _prefetched(items(), 2)
    assert next(it) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(it)
