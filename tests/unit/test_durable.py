"""write_if_absent (service.durable): a file gets its name only if no file has it, and no
temporary file is left behind whatever happens. write_atomically, its sibling, is held by the
spool's and the outbox's tests (a crash mid-write leaves the old file or the new one)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from service.durable import write_if_absent


def _leftovers(directory: Path) -> list[Path]:
    return list(directory.glob(".*.tmp"))


def test_a_free_name_is_written_durably_and_a_taken_one_kept(tmp_path: Path) -> None:
    target = tmp_path / "study" / "1.2.3.dcm"
    assert write_if_absent(target, lambda out: out.write(b"from PACS"))
    assert target.read_bytes() == b"from PACS" and os.stat(target).st_nlink == 1
    assert not write_if_absent(target, lambda out: out.write(b"another copy"))
    assert target.read_bytes() == b"from PACS" and _leftovers(target.parent) == []


def test_a_write_that_fails_leaves_nothing(tmp_path: Path) -> None:
    def failing(out: BinaryIO) -> None:
        out.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="No space left"):
        write_if_absent(tmp_path / "1.2.3.dcm", failing)
    assert list(tmp_path.iterdir()) == []


def test_a_volume_without_hard_links_fails_clearly_and_leaves_nothing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """FAKED (os.link made to raise): an SMB or FUSE volume refusing hard links is not at hand."""
    def no_links(*_: object, **__: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(OSError, match="Operation not permitted"):
        write_if_absent(tmp_path / "1.2.3.dcm", lambda out: out.write(b"from PACS"))
    assert list(tmp_path.iterdir()) == []
