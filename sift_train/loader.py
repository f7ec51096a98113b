"""Training batches on the device: this process's shard of each global batch, prepared ahead.

The order of the batches and the augmentation draws come from :class:`sift_train.data.Batches` (one
generator per epoch, consumed batch by batch), so prefetching runs in one background thread that
prepares the batches in order; the results are bit-identical to preparing them inline. On CUDA the
thread also pins the host memory, so the copy to the GPU is asynchronous (``non_blocking``) and
overlaps the previous step's compute; torch releases the GIL in its kernels, so one thread keeps up.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import torch

from .data import Batches, Dataset, prepare
from .distributed import Dist, shard

_END = object()


class DeviceLoader:
    """``epoch(e)`` yields ``(x, y, n)``: this rank's shard on ``device`` and the global batch size."""

    def __init__(self, batches: Batches, data: Dataset, device: torch.device, dist: Dist,
                 prefetch: int = 0, channels_last: bool = False):
        self.batches, self.data, self.device, self.dist = batches, data, device, dist
        self.prefetch, self.channels_last = prefetch, channels_last
        self.pin = device.type == "cuda"

    def _host_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        for x, y, gen in self.batches.epoch(epoch):
            n = len(y)
            x, y = shard(self.dist, prepare(x, self.data, True, gen), y)
            if self.pin:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y, n

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmt = torch.channels_last if self.channels_last and x.dim() == 4 else torch.preserve_format
        return (x.to(self.device, non_blocking=self.pin, memory_format=fmt),
                y.to(self.device, non_blocking=self.pin))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        source = self._host_batches(epoch) if self.prefetch < 1 else _prefetched(
            self._host_batches(epoch), self.prefetch)
        for x, y, n in source:
            yield (*self._to_device(x, y), n)


def _prefetched(items: Iterator, depth: int) -> Iterator:
    """Run ``items`` in a daemon thread, at most ``depth`` ahead; its exceptions re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    thread = threading.Thread(target=work, daemon=True, name="sift-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
