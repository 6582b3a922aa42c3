"""Where an instance is written while it arrives: a directory of ours, on the spool's volume.

pynetdicom (with STORE_RECV_CHUNKED_DATASET) streams each C-STORE's dataset into a
NamedTemporaryFile of the system's temporary directory. Three things go wrong with that:
files of transfers that never finish (they hold the patient's header) pile up in TMPDIR and
nobody removes them; TMPDIR is often a small tmpfs while the spool is the volume sized for
studies; and when a write fails (disk full) the exception is raised in pynetdicom's reader
thread, which aborts the association instead of answering Out of Resources, so a modality
sees a network error and may not retry.

So reception goes through `ReceiveDirectory`: files are created in `<var>/receiving/`, a write
that fails is remembered instead of raised (the rest of the data is read and dropped, keeping
the association in step), the C-STORE handler asks `write_error(path)` and answers 0xA700, a
transfer cut off mid-way is removed when its connection closes, and whatever a crash left is
removed at start. pynetdicom offers no setting for the file it receives into, so its module's
`NamedTemporaryFile` name is pointed at our factory (pynetdicom looks it up at each C-STORE).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from pynetdicom import dimse_messages, evt

from service.errors import ConfigError

log = logging.getLogger(__name__)

_PREFIX = "recv-"


class ReceiveFile:
    """The file-like object pynetdicom writes one arriving dataset into.

    pynetdicom calls write(), file.flush(), close() and reads .name; none of them raises on a
    full disk: the first OSError is kept in `error` and later data is dropped.
    """

    def __init__(self, directory: Path) -> None:
        descriptor, name = tempfile.mkstemp(dir=directory, prefix=_PREFIX, suffix=".dcm")
        self.name = name
        self._stream = os.fdopen(descriptor, "wb")
        self.error: OSError | None = None

    @property
    def file(self) -> ReceiveFile:
        """pynetdicom flushes through `.file`, as on a NamedTemporaryFile wrapper."""
        return self

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                self._stream.write(data)
            except OSError as error:
                self.error = error
        return len(data)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as error:
                self.error = error

    def close(self) -> None:
        try:
            self._stream.close()
        except OSError as error:
            self.error = self.error or error


class ReceiveDirectory:
    """Creates, tracks and cleans up the files instances are received into."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._lock = threading.Lock()
        self._open: dict[str, tuple[ReceiveFile, threading.Thread]] = {}

    def remove_leftovers(self) -> int:
        """Delete what an interrupted run left (never acknowledged, so nothing is lost)."""
        leftovers = list(self.directory.glob(f"{_PREFIX}*"))
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        return len(leftovers)

    def create(self, *_args: object, **_kwargs: object) -> ReceiveFile:
        """pynetdicom's NamedTemporaryFile(...) call: its arguments (mode, suffix) do not apply.

        It is called from the association's reader thread (pynetdicom's DUL provider), which
        is how a file cut off by a closing connection is found again.
        """
        receiving = ReceiveFile(self.directory)
        with self._lock:
            self._forget_ended()
            self._open[receiving.name] = (receiving, threading.current_thread())
        return receiving

    def _forget_ended(self) -> None:
        """Drop the files of connections whose thread has ended. The listener's are asked about
        (write_error) or discarded at close; but the setting is process-wide, so the instances a
        C-GET of this process receives (the worker retrieving a series, service.priors.dimse)
        come here too and are never asked about: pynetdicom has deleted them, they are forgotten."""
        for name in [name for name, (_, owner) in self._open.items() if not owner.is_alive()]:
            receiving, _ = self._open.pop(name)
            receiving.close()
            Path(name).unlink(missing_ok=True)

    def write_error(self, path: str | Path) -> OSError | None:
        """The error that cut this dataset short while it was received, if any. Called by the
        C-STORE handler, after which pynetdicom deletes the file: it is no longer ours to track."""
        with self._lock:
            entry = self._open.pop(str(path), None)
        return entry[0].error if entry is not None else None

    def discard_unfinished(self, event: evt.Event) -> None:
        """EVT_CONN_CLOSE: a dataset still being received on this connection never reached the
        C-STORE handler (the peer aborted or vanished): remove its partial file."""
        with self._lock:
            cut_off = [name for name, (_, owner) in self._open.items() if owner is event.assoc.dul]
            entries = [self._open.pop(name) for name in cut_off]
        for receiving, _ in entries:
            receiving.close()
            Path(receiving.name).unlink(missing_ok=True)
        if entries:
            log.info("removed %d partially received instance(s) of a closed connection", len(entries))

    def check_same_volume(self, spool_root: Path) -> None:
        """ConfigError unless this directory and the spool are on one file system: a received
        file enters the spool by rename (service.durable.move_in), which fails across file
        systems, and every instance would then be refused (e.g. a separate disk mounted at
        var_dir/spool but not at var_dir/receiving)."""
        if os.stat(self.directory).st_dev != os.stat(spool_root).st_dev:
            raise ConfigError(f"{self.directory} and {spool_root} are on different file systems: received "
                              "instances enter the spool by rename; mount one volume at var_dir (or both there)")

    def install(self) -> None:
        """Make pynetdicom receive into this directory (process-wide: one listener per process)."""
        dimse_messages.NamedTemporaryFile = self.create  # type: ignore[assignment]
