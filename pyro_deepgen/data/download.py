"""Downloading a data file safely: into a temporary file, verified, then atomically renamed."""
import hashlib
import os
import tempfile
from typing import Callable, Optional, Sequence
from urllib.request import urlopen

from .files import CorruptDataError

_CHUNK = 1 << 20


class DownloadError(OSError):
    """No mirror delivered a file that passed verification; the message lists each attempt."""


def download_file(
    urls: Sequence[str],
    path: str,
    *,
    md5: Optional[str] = None,
    verify: Optional[Callable[[str], None]] = None,
    timeout: float = 60.0,
) -> str:
    """Fetch ``path`` from the first of ``urls`` that delivers a verified copy.

    The bytes go to a temporary file next to ``path``; only when the MD5 digest equals ``md5``
    (if given) and ``verify(temp_path)`` returns without raising (if given) is the temporary
    file renamed onto ``path`` with :func:`os.replace`, which is atomic. A failed or interrupted
    download never leaves a file at ``path`` and removes its temporary file.

    :param urls: mirrors, tried in order.
    :param path: destination file; its folder is created if needed.
    :param md5: expected hex MD5 digest of the file, or ``None`` to skip the digest check.
    :param verify: optional callable that raises if the downloaded file is unusable.
    :param timeout: seconds to wait for each connection.
    :returns: ``path``.
    :raises DownloadError: if every mirror failed.
    """
    if md5 is None and verify is None:
        raise ValueError("download_file needs md5 or verify: unverified downloads are refused")
    if not urls:
        raise ValueError("urls must name at least one mirror")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part",
                                   dir=folder)
        try:
            digest = hashlib.md5()
            with os.fdopen(fd, "wb") as out, urlopen(url, timeout=timeout) as response:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
            if md5 is not None and digest.hexdigest() != md5.lower():
                raise CorruptDataError(
                    f"MD5 {digest.hexdigest()} of the download does not match the expected {md5}"
                )
            if verify is not None:
                verify(tmp)
            os.replace(tmp, path)
            return path
        except (OSError, ValueError) as e:  # URLError and CorruptDataError are among these
            failures.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DownloadError(
        f"could not download {os.path.basename(path)} to {path}; tried "
        + "; ".join(failures)
        + ". Check the network, or fetch the file by hand and put it at that path."
    )
