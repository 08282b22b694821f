"""Locating data files on disk and reporting missing or corrupt ones."""
import os
from typing import Iterable, List, Optional, Sequence


class CorruptDataError(ValueError):
    """A data file exists but cannot be read: it is truncated, corrupt or not the expected format.

    The message names the file and says what to do. Loaders never keep anything from a read
    that raised this error.
    """


def candidate_paths(root: str, names: Iterable[str], subdirs: Sequence[str] = ("",)) -> List[str]:
    """All paths ``root/subdir/name`` in search order (``subdirs`` outer, ``names`` inner)."""
    root = os.path.expanduser(os.fspath(root))
    return [os.path.join(root, subdir, name) for subdir in subdirs for name in names]


def find_file(candidates: Sequence[str]) -> Optional[str]:
    """The first of ``candidates`` that is a file, or ``None``."""
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None
