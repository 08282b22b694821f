import gzip
import os
import re

import numpy as np
import pytest

from pyro_deepgen.data import CorruptDataError, read_idx

from .idx_files import idx_bytes, write_idx


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([7, 0, 255], dtype=np.uint8),
        np.array([[-5, 1 << 20], [3, -(1 << 30)]], dtype=np.int32),
        np.array([0.5, -1.25, 3e7], dtype=np.float32),
    ],
    ids=["ubyte3d", "ubyte1d", "int32", "float32"],
)
def test_read_idx_round_trip(tmp_path, array, gz):
    path = write_idx(str(tmp_path / "a.idx"), array, gz)
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # writable, not a view of the file's bytes


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = str(tmp_path / "no-suffix")
    with open(path, "wb") as f:
        f.write(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.mark.parametrize("cut", [2, 10, 16 + 5], ids=["magic", "header", "data"])
def test_truncated_file_names_path(tmp_path, cut):
    data = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))  # 16-byte header + 24 bytes
    path = _write(tmp_path / "train-images-idx3-ubyte", data[:cut])
    with pytest.raises(CorruptDataError, match=re.escape(path) + " is truncated.*download=True"):
        read_idx(path)


def test_truncated_data_reports_sizes(tmp_path):
    data = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))
    path = _write(tmp_path / "x", data[:-1])
    with pytest.raises(CorruptDataError, match=r"shape \(2, 3, 4\) \(24 bytes.*holds 23 bytes"):
        read_idx(path)


def test_trailing_bytes(tmp_path):
    data = idx_bytes(np.zeros(5, dtype=np.uint8)) + b"\x00"
    path = _write(tmp_path / "x", data)
    with pytest.raises(CorruptDataError, match="has trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize(
    "magic", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"],
    ids=["nonzero", "typecode", "ndim0"],
)
def test_bad_magic_names_path(tmp_path, magic):
    data = magic + idx_bytes(np.zeros(4, dtype=np.uint8))[4:]
    path = _write(tmp_path / "labels", data)
    expected = re.escape(path) + ".*bad magic number 0x" + magic.hex()
    with pytest.raises(CorruptDataError, match=expected):
        read_idx(path)


def test_truncated_gzip_names_path(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32) % 251))
    path = _write(tmp_path / "x.gz", data[: len(data) // 2])
    with pytest.raises(CorruptDataError, match=re.escape(path) + " is not a readable gzip file"):
        read_idx(path)


def test_corrupt_gzip_names_path(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32))))
    data[20:30] = b"\xff" * 10
    path = _write(tmp_path / "x.gz", bytes(data))
    with pytest.raises(CorruptDataError, match=re.escape(path)):
        read_idx(path)


def test_corrupt_is_value_error_and_missing_is_file_not_found(tmp_path):
    assert issubclass(CorruptDataError, ValueError)  # the CLI turns it into exit code 2
    with pytest.raises(FileNotFoundError):
        read_idx(os.path.join(str(tmp_path), "absent"))
