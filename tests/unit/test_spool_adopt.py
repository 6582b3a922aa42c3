"""The listener's received file is moved into the spool (no second copy), atomically, its data
fsync'd (its directory's fsync is the group commit's: tests/unit/test_group_commit.py)."""

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
