"""Bounded reading of ``.npz`` files: sizes and types checked before anything is allocated.

``numpy.load`` trusts a member's header: a crafted shape, or a small compressed member that inflates
to gigabytes, is allocated before anything fails. Here every member's declared (uncompressed) size
comes from the zip directory and is checked against a caller's limit first; zip decompression never
yields more than that size; the ``.npy`` header's ``shape × itemsize`` must match it exactly; object
(pickled) arrays are refused. Errors are :class:`ValueError` with a one-line reason.
"""
from __future__ import annotations

import io
import math
import zipfile
from os import PathLike

import numpy as np
from numpy.lib import format as npy

__all__ = ["open_npz", "declared_bytes", "read_member", "MAX_HEADER_BYTES"]

#: Largest ``.npy`` header read (numpy's own default limit).
MAX_HEADER_BYTES = 10_000
_KINDS = "biufU"  # bool, integers, floats, unicode strings: everything a sift file holds
_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}


def open_npz(source: str | PathLike | bytes) -> zipfile.ZipFile:
    """The zip directory of an ``.npz`` (a path, or the file's bytes); nothing is decompressed."""
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)


def declared_bytes(zf: zipfile.ZipFile) -> int:
    """Total uncompressed size of every member, as the zip directory declares it."""
    return sum(info.file_size for info in zf.infolist())


def read_member(zf: zipfile.ZipFile, key: str, *, max_bytes: int) -> np.ndarray:
    """Array ``key`` (member ``key.npy``) if its declared size is at most ``max_bytes``.

    Raises KeyError if the member is missing, ValueError if it is larger than ``max_bytes``, holds
    Python objects or another unsupported dtype, or its header does not match its size.
    """
    info = zf.getinfo(f"{key}.npy")
    if info.file_size > max_bytes:
        raise ValueError(f"{key}: {info.file_size} bytes uncompressed, over the limit of {max_bytes}")
    with zf.open(info) as fp:
        version = npy.read_magic(fp)
        if version not in _READERS:
            raise ValueError(f"{key}: unsupported .npy format version {version}")
        shape, fortran_order, dtype = _READERS[version](fp, max_header_size=MAX_HEADER_BYTES)
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in _KINDS:
            raise ValueError(f"{key}: unsupported dtype {dtype} (pickled objects are never loaded)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - fp.tell():
            raise ValueError(f"{key}: header claims shape {shape} of {dtype} ({nbytes} bytes), "
                             f"the member holds {info.file_size - fp.tell()}")
        buffer = bytearray(nbytes)
        if fp.readinto(memoryview(buffer)) != nbytes:
            raise ValueError(f"{key}: truncated array data")
    order = "F" if fortran_order else "C"
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
