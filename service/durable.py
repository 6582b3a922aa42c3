"""Durable, atomic file writes: what the spool and the outbox promise rests on this."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:  # what `write` returns is unused
    """Write through a temporary file in the same directory, fsync it, then rename it.

    A crash leaves either the previous file or the complete new one (os.replace is atomic
    within a file system); PACS forwarders and EHR loaders polling the directory never pick
    up a partial output. The directory is fsync'd so the rename itself survives power loss.
    """
    tmp_name = _written_beside(target, write)
    try:
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def write_if_absent(target: Path, write: Callable[[BinaryIO], object]) -> bool:
    """As write_atomically, but never replacing: the complete file gets the name only if no
    file has it (a hard link, which fails when the name exists), so a file put there meanwhile
    (the listener storing an instance sent again) is kept. True when `target` was written."""
    tmp_name = _written_beside(target, write)
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        return False
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    fsync_directory(target.parent)
    return True


def _written_beside(target: Path, write: Callable[[BinaryIO], object]) -> str:
    """A temporary file in target's directory (created durably), written by `write` and
    fsync'd; removed if writing fails. Named after the target, so that remove_partial_writes
    finds what a crash leaves."""
    _make_directories_durably(target.parent)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return tmp_name


def move_in(source: Path, target: Path) -> None:
    """Rename a complete file over `target` once its data is durable: fsync it, create target's
    directory durably, rename. The rename is atomic (`target` is the old file or the whole new
    one) and nothing is copied; `source` must be on the target's file system (os.replace raises
    OSError otherwise). The new directory entry is durable only after
    fsync_directory(target.parent): left to the caller so that one directory fsync can cover
    many files (service.ingest.group_commit)."""
    _make_directories_durably(target.parent)
    descriptor = os.open(source, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        os.replace(source, target)
    except FileNotFoundError:  # the directory removed meanwhile, emptied by spool retention: made again
        _make_directories_durably(target.parent)
        os.replace(source, target)


def remove_partial_writes(directory: Path, pattern: str = ".*.tmp") -> int:
    """Delete the temporary files write_atomically leaves when the process dies mid-write (they
    may hold a patient's header; their target was never written, so nothing is lost). `pattern`
    is relative to `directory` (e.g. "*/.*.tmp" one level down). Returns how many."""
    leftovers = list(directory.glob(pattern)) if directory.is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)


def _make_directories_durably(directory: Path) -> None:
    """mkdir -p, fsync'ing each new directory's parent so its entry survives power loss too."""
    if directory.is_dir():
        return
    _make_directories_durably(directory.parent)
    directory.mkdir(exist_ok=True)
    fsync_directory(directory.parent)


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (files created, renamed or removed in it) durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
