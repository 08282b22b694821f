import hashlib
import io
import os

import pytest

import pyro_deepgen.data.download as download_module
from pyro_deepgen.data import DownloadError
from pyro_deepgen.data.download import download_file

PAYLOAD = b"0123456789" * 1000
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _BrokenResponse(io.BytesIO):
    """Delivers some bytes, then the connection drops."""

    def read(self, size=-1):
        if self.tell() > 0:
            raise ConnectionResetError("connection reset by peer")
        return super().read(100)


def test_interrupted_download_falls_back_to_next_mirror(tmp_path, monkeypatch):
    def urlopen(url, timeout):
        return _BrokenResponse(PAYLOAD) if "first" in url else io.BytesIO(PAYLOAD)

    monkeypatch.setattr(download_module, "urlopen", urlopen)
    path = str(tmp_path / "file.bin")
    assert download_file(["http://first/file.bin", "http://second/file.bin"], path, md5=MD5) == path
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert os.listdir(str(tmp_path)) == ["file.bin"]


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "urlopen", lambda url, timeout: _BrokenResponse(PAYLOAD))
    path = str(tmp_path / "sub" / "file.bin")
    with pytest.raises(DownloadError, match="connection reset.*fetch the file by hand"):
        download_file(["http://a/file.bin"], path, md5=MD5)
    assert os.listdir(str(tmp_path / "sub")) == []


def test_existing_file_is_replaced_only_after_verification(tmp_path, monkeypatch):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")
    monkeypatch.setattr(download_module, "urlopen", lambda url, timeout: io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match="does not match"):
        download_file(["http://a/file.bin"], str(path), md5=MD5)
    assert path.read_bytes() == b"old"


def test_unverified_download_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs md5 or verify"):
        download_file(["http://a/x"], str(tmp_path / "x"))
