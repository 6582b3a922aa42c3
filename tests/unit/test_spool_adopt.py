"""The listener's received file is moved into the spool (no second copy), atomically, its data
fsync'd (its directory's fsync is the group commit's: tests/unit/test_group_commit.py)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.ingest.receive import ReceiveDirectory
from service.ingest.spool import Spool, study_key


def test_move_in_moves_the_received_file_in_and_replaces_the_same_uid(tmp_path):
    spool = Spool(tmp_path / "spool")
    receiving = tmp_path / "receiving"
    receiving.mkdir()
    first, second = receiving / "recv-a.dcm", receiving / "recv-b.dcm"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    path = spool.move_in("1.2.3", "1.2.3.4", first)
    assert path == tmp_path / "spool" / study_key("1.2.3") / "1.2.3.4.dcm" and path.read_bytes() == b"first"
    assert not first.exists()  # moved, not copied: pynetdicom's later delete finds nothing
    assert spool.move_in("1.2.3", "1.2.3.4", second) == path and path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["1.2.3.4.dcm"] and not list(receiving.iterdir())


def test_a_spool_on_another_file_system_than_the_receiving_directory_is_refused_at_start(tmp_path):
    """A rename cannot cross file systems: with the spool on another volume every instance
    would be refused, so the start fails instead, naming both directories. /dev/shm (tmpfs)
    stands for the other volume."""
    other_volume = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else None
    if other_volume is None or os.stat(other_volume).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system here")
    try:
        receiving = ReceiveDirectory(tmp_path / "receiving")
        receiving.check_same_volume(tmp_path)  # same volume: fine
        with pytest.raises(ConfigError, match="different file systems"):
            receiving.check_same_volume(other_volume)
    finally:
        shutil.rmtree(other_volume)
