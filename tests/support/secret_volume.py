"""A Kubernetes Secret as kubelet mounts it, for the tests of credential rotation.

kubelet's AtomicWriter lays a Secret volume out as
    <dir>/..2024_05_01_12_00_00.000000001/<key>   the files, in a hidden timestamped directory
    <dir>/..data -> ..2024_05_01_12_00_00.000000001
    <dir>/<key> -> ..data/<key>                    what the pod's RCDS_*_FILE variables name
and updates it by writing the new files into a new timestamped directory, pointing a temporary
symlink at it, renaming that over `..data` (atomic) and removing the old directory. The visible
names never change; what they resolve to does, all keys at once.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

_generation = itertools.count(1)


class SecretVolume:
    """A mounted Secret with one key, `key`, holding `content`; rotate() changes it as kubelet does."""

    def __init__(self, directory: Path, key: str, content: str | bytes) -> None:
        directory.mkdir(parents=True)
        self.directory = directory
        self.key = key
        self._data = directory / "..data"
        self.rotate(content)
        (directory / key).symlink_to(Path("..data") / key)

    @property
    def path(self) -> Path:
        """The file the setting names (a symlink through ..data)."""
        return self.directory / self.key

    def rotate(self, content: str | bytes) -> None:
        """The Secret's new content, swapped in atomically; the previous files are removed."""
        previous = os.readlink(self._data) if self._data.is_symlink() else None
        timestamped = self.directory / f"..2024_05_01_12_00_00.{next(_generation):09d}"
        timestamped.mkdir()
        (timestamped / self.key).write_bytes(content.encode() if isinstance(content, str) else content)
        temporary = self.directory / "..data_tmp"
        temporary.symlink_to(timestamped.name)
        temporary.rename(self._data)
        if previous is not None:
            shutil.rmtree(self.directory / previous)
