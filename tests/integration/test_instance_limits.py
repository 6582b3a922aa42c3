"""The listener refuses instances whose header claims what their file does not hold, with a
real peer: a pynetdicom AE sends, over one association, a good STS_019 slice and slices made
from it with pydicom (2,000,000 frames claimed, pixel data cut to 60%, Rows 65535, a header cut
inside an element). Each bad one gets a 0xC000 failure naming what is wrong; the good one is
stored and indexed, and the refusals are counted by reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage

from service.ingest.index import StudyIndex
from service.ingest.receive import ReceiveDirectory
from service.ingest.scp import STATUS_CANNOT_UNDERSTAND, StorageHandlers, build_ae, start_listener
from service.ingest.spool import Spool
from service.observability import INGEST_REGISTRY
from tests.support.processes import LOOPBACK, free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore:The value length")]
OUR_AE = "RADIOMICS_CDS"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[int, StudyIndex]]:
    index = StudyIndex(tmp_path / "var" / "index.sqlite")
    port = free_port()
    server = start_listener(build_ae(OUR_AE, 2), LOOPBACK, port, StorageHandlers(
        Spool(tmp_path / "var" / "spool"), index, ReceiveDirectory(tmp_path / "var" / "receiving")))
    yield port, index
    server.shutdown()
    index.close()


def _rejected(reason: str) -> float:
    return INGEST_REGISTRY.get_sample_value("rcds_instances_rejected_total", {"reason": reason}) or 0.0


def _bad_files(good: Path, folder: Path) -> dict[str, Path]:
    """Each defect in a file of its own, with a new SOP Instance UID."""
    files = {}
    for name, change in (("frames", lambda ds: setattr(ds, "NumberOfFrames", 2_000_000)),
                         ("rows", lambda ds: setattr(ds, "Rows", 65535))):
        ds = pydicom.dcmread(good)
        change(ds)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)
        files[name] = folder / f"{name}.dcm"
    data = good.read_bytes()
    pixel_bytes = len(pydicom.dcmread(good).PixelData)
    files["cut_pixels"] = folder / "cut_pixels.dcm"  # sent from the file: raw bytes, element length intact
    files["cut_pixels"].write_bytes(data[: len(data) - pixel_bytes + pixel_bytes * 6 // 10])
    files["cut_header"] = folder / "cut_header.dcm"
    files["cut_header"].write_bytes(data[:600])  # inside an element of the header, after the UIDs the sender reads
    return files


def _short_pixels(good: Path) -> pydicom.Dataset:
    """The slice with 60% of its pixel data, the element's length saying so (a re-encoding sender)."""
    ds = pydicom.dcmread(good)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) * 6 // 10 // 2 * 2]
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    return ds


def test_bad_claims_are_refused_and_a_good_slice_in_the_same_association_is_stored(listener, sts019, tmp_path,
                                                                                   monkeypatch):
    """Files go as they are on disk (pynetdicom's chunked sending, like a modality streaming its
    files), so the cut ones arrive cut."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    port, index = listener
    good = sorted((sts019 / "image").iterdir())[0]
    bad = _bad_files(good, tmp_path)
    before = {reason: _rejected(reason) for reason in ("over_limit", "truncated", "inconsistent")}
    sender = AE(ae_title="MODALITY")
    sender.add_requested_context(CTImageStorage, pydicom.dcmread(good).file_meta.TransferSyntaxUID)
    association = sender.associate(LOOPBACK, port, ae_title=OUR_AE)
    assert association.is_established
    try:
        answers = {name: association.send_c_store(path) for name, path in bad.items()}
        answers["short_pixels"] = association.send_c_store(_short_pixels(good))
        stored = association.send_c_store(good)
    finally:
        association.release()
    pixel_bytes = len(pydicom.dcmread(good).PixelData)
    expected = {
        "frames": "NumberOfFrames 2000000 over the limit of 5000",
        "rows": "Rows 65535 over the limit of 4096",
        "cut_pixels": f"PixelData truncated: {pixel_bytes * 6 // 10} of {pixel_bytes} bytes",
        "cut_header": "instance is truncated",
        "short_pixels": f"PixelData has {pixel_bytes * 6 // 10 // 2 * 2} of {pixel_bytes} bytes claimed",
    }
    assert {name: (answer.Status, answer.ErrorComment) for name, answer in answers.items()} == {
        name: (STATUS_CANNOT_UNDERSTAND, comment) for name, comment in expected.items()}
    assert stored.Status == 0x0000
    header = pydicom.dcmread(good, stop_before_pixels=True)
    assert {record.sop_instance_uid for record in index.instances(header.StudyInstanceUID)} == {header.SOPInstanceUID}
    assert _rejected("over_limit") - before["over_limit"] == 2
    assert _rejected("truncated") - before["truncated"] == 2
    assert _rejected("inconsistent") - before["inconsistent"] == 1
