"""Reader for the IDX binary format of the MNIST files (LeCun et al.).

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <number of dims>``, one big-endian
``uint32`` per dimension, then the values in C order, big-endian. The file may be gzipped.
"""
import gzip
import math
import os
import struct
import zlib
from typing import Union

import numpy as np

from .files import CorruptDataError


# IDX type code -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = (
    "Delete it and run again with download=True, or replace it with an intact copy "
    "of the original file."
)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptDataError(f"{path} is not a readable gzip file ({e}). {_FIX}") from e


def read_idx(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Read an IDX file, plain or gzipped (detected from its first bytes, not its name).

    :param path: the file.
    :returns: a writable numpy array in native byte order with the shape from the header.
    :raises FileNotFoundError: if ``path`` does not exist.
    :raises CorruptDataError: (a :class:`ValueError`) naming ``path`` if the gzip stream is
        broken, the magic number is not an IDX one, or the data size does not match the header
        (a truncated file, or trailing bytes).
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise CorruptDataError(
            f"{path} is truncated: {len(raw)} bytes, shorter than the 4-byte IDX magic number. "
            + _FIX
        )
    zero1, zero2, code, ndim = raw[:4]
    if zero1 != 0 or zero2 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise CorruptDataError(
            f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()} (expected "
            "0x0000 followed by a type code in "
            f"{{{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}}} and a number of dims >= 1). "
            + _FIX
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise CorruptDataError(
            f"{path} is truncated: {len(raw)} bytes, shorter than its {header_size}-byte header. "
            + _FIX
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    actual = len(raw) - header_size
    if actual != expected:
        problem = "is truncated" if actual < expected else "has trailing bytes"
        raise CorruptDataError(
            f"{path} {problem}: its header says shape {tuple(shape)} ({expected} bytes of data) "
            f"but it holds {actual} bytes of data. " + _FIX
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header_size)
    return data.reshape(shape).astype(dtype.newbyteorder("="))
