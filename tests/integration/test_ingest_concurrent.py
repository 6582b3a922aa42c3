"""Four associations at once, as a PACS forwarding several series does: their instances share
directory fsyncs and index transactions (service.ingest.group_commit), and still every Success
comes only after the instance's file is in the spool and its row is committed; after a kill -9
mid-transfer, every instance answered Success is still there.

Real peers: `radiomics-cds ingest` in a subprocess, four pynetdicom senders in threads. The
index is read from the test's own SQLite connection the moment each Success arrives: a row
that was not committed yet would not be there.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from service.ingest.spool import study_key
from tests.support.ct_series import slice_pixels, write_ct_series
from tests.support.service import RunningService

pytestmark = [pytest.mark.external, pytest.mark.timeout(400)]


def _committed_path(index: Path, sop_instance_uid: str) -> Path | None:
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute("SELECT path FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,)).fetchone()
    return Path(row[0]) if row else None


def test_every_success_on_concurrent_associations_is_spooled_and_indexed_first(tmp_path: Path) -> None:
    study_uid = generate_uid()
    folder = tmp_path / "series"
    uids = write_ct_series(folder, study_uid, [slice_pixels(k) for k in range(16)])
    files = sorted(folder.iterdir())
    service = RunningService(tmp_path / "var", "ingest")
    answers: dict[str, tuple[int, Path | None]] = {}

    def send(part: list[Path]) -> None:
        association = service.associate(contexts=(CTImageStorage,))
        assert association.is_established
        for file in part:
            dataset = pydicom.dcmread(file)
            status = association.send_c_store(dataset).Status
            path = _committed_path(service.var_dir / "index.sqlite", dataset.SOPInstanceUID)
            answers[dataset.SOPInstanceUID] = (status, path if path is not None and path.is_file() else None)
        association.release()

    try:
        senders = [threading.Thread(target=send, args=(files[k::4],)) for k in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
    finally:
        service.stop()
    spool = service.var_dir / "spool" / study_key(study_uid)
    assert {uid: status for uid, (status, _) in answers.items()} == {uid: 0x0000 for uid in uids}
    assert {uid: path for uid, (_, path) in answers.items()} == {uid: spool / f"{uid}.dcm" for uid in uids}
    assert all(pydicom.dcmread(spool / f"{uid}.dcm").SOPInstanceUID == uid for uid in uids)


def test_after_a_kill_9_mid_transfer_every_acknowledged_instance_is_indexed_and_whole(tmp_path: Path) -> None:
    """kill -9 of ingest while four associations send; a new ingest on the same var directory
    has every instance that was answered Success indexed, its spooled file identical to what was
    sent, and no partial file left in the receiving directory. (A process kill keeps the page
    cache: this checks the order of the steps and the recovery, not the fsyncs themselves.)"""
    folder = tmp_path / "series"
    study_uid = generate_uid()
    write_ct_series(folder, study_uid, [slice_pixels(k) for k in range(40)])
    files = sorted(folder.iterdir())
    var_dir = tmp_path / "var"
    service = RunningService(var_dir, "ingest")
    acknowledged: list[str] = []
    enough = threading.Event()

    def send(part: list[Path]) -> None:
        association = service.associate(contexts=(CTImageStorage,))
        for file in part:
            dataset = pydicom.dcmread(file)
            try:
                status = association.send_c_store(dataset).get("Status")
            except RuntimeError:  # pynetdicom: the association is gone (the receiver was killed)
                return
            if status != 0x0000:
                return
            acknowledged.append(dataset.SOPInstanceUID)
            if len(acknowledged) >= 8:
                enough.set()
        association.release()

    senders = [threading.Thread(target=send, args=(files[k::4],)) for k in range(4)]
    for sender in senders:
        sender.start()
    enough.wait()
    service.process.kill()
    service.process.wait()
    for sender in senders:
        sender.join()
    service.stop()
    restarted = RunningService(var_dir, "ingest")
    try:
        indexed = restarted.indexed(study_uid)
    finally:
        restarted.stop()
    assert acknowledged and set(acknowledged) <= indexed
    sent = {dataset.SOPInstanceUID: dataset for dataset in map(pydicom.dcmread, files)}
    spool = var_dir / "spool" / study_key(study_uid)
    for uid in acknowledged:  # PixelData is the last element: a cut-off file would not match
        assert pydicom.dcmread(spool / f"{uid}.dcm").PixelData == sent[uid].PixelData
    assert not list((var_dir / "receiving").iterdir())
