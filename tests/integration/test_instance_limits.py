"""The listener refuses instances whose header claims what their file does not hold, with a
real peer: a pynetdicom AE sends, over one association, a good STS_019 slice and slices made
from it with pydicom (2,000,000 frames claimed, pixel data cut to 60%, Rows 65535, a header cut
inside an element). Each bad one gets a 0xC000 failure naming what is wrong; the good one is
stored and indexed, and the refusals are counted by reason. Likewise for Spatial Registration
objects whose matrices cannot be read, and for LABELMAP SEGs (their own SOP class), which are
stored like BINARY ones."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, SpatialRegistrationStorage  # type: ignore[attr-defined]

from service.ingest.index import StudyIndex
from service.ingest.receive import ReceiveDirectory
from service.ingest.scp import STATUS_CANNOT_UNDERSTAND, StorageHandlers, build_ae, start_listener
from service.ingest.spool import Spool
from service.observability import INGEST_REGISTRY
from tests.support.highdicom_seg import highdicom_seg
from tests.support.moved_study import spatial_registration
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


def _registrations(sts019: Path, folder: Path) -> dict[str, Path]:
    """A good Spatial Registration of STS_019's frame (tests/support/moved_study.py) and copies
    of it, each with one defect in its second item (the one relating another frame)."""
    good = folder / "reg.dcm"
    spatial_registration(good, sts019 / "image", "1.2.826.0.1.3680043.2.1125.1", np.eye(4))

    def matrix(ds: pydicom.Dataset) -> pydicom.Dataset:
        return ds.RegistrationSequence[1].MatrixRegistrationSequence[0].MatrixSequence[0]

    defects = {
        "no_frame": lambda ds: delattr(ds.RegistrationSequence[1], "FrameOfReferenceUID"),
        "no_matrices": lambda ds: delattr(ds.RegistrationSequence[1], "MatrixRegistrationSequence"),
        "twelve_values": lambda ds: setattr(matrix(ds), "FrameOfReferenceTransformationMatrix", ["1"] * 12),
        "deformable": lambda ds: setattr(matrix(ds), "FrameOfReferenceTransformationMatrixType", "DEFORMABLE"),
        "singular": lambda ds: setattr(matrix(ds), "FrameOfReferenceTransformationMatrix",
                                       ["0"] * 15 + ["1"]),
    }
    files = {"good": good}
    for name, change in defects.items():
        ds = pydicom.dcmread(good)
        change(ds)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)
        files[name] = folder / f"{name}.dcm"
    return files


def test_a_malformed_spatial_registration_is_refused_and_a_good_one_stored(listener, sts019, tmp_path):
    """The follow-up reads a registration's matrices (service.spatial_registration): one it could
    not read is refused while its sender still holds it, saying what is wrong."""
    port, index = listener
    files = _registrations(sts019, tmp_path)
    before = _rejected("registration")
    received = INGEST_REGISTRY.get_sample_value("rcds_instances_received_total", {"kind": "reg"}) or 0.0
    sender = AE(ae_title="MODALITY")
    sender.add_requested_context(SpatialRegistrationStorage, pydicom.uid.ExplicitVRLittleEndian)
    association = sender.associate(LOOPBACK, port, ae_title=OUR_AE)
    assert association.is_established
    try:
        answers = {name: association.send_c_store(path) for name, path in files.items()}
    finally:
        association.release()
    item = "Spatial Registration item 2: "
    expected = {
        "no_frame": item + "FrameOfReferenceUID is missing",
        "no_matrices": item + "MatrixRegistrationSequence has 0 items, expected 1",
        "twelve_values": item + "FrameOfReferenceTransformationMatrix has 12 values, expected 16",
        "deformable": item + "FrameOfReferenceTransformationMatrixType is not one of AFFINE, RIGID, RIGID_SCALE",
        "singular": item + "FrameOfReferenceTransformationMatrix is singular",
    }
    assert answers.pop("good").Status == 0x0000
    assert {name: (answer.Status, answer.ErrorComment) for name, answer in answers.items()} == {
        name: (STATUS_CANNOT_UNDERSTAND, comment[:64]) for name, comment in expected.items()}  # LO: 64 characters
    good = pydicom.dcmread(files["good"])
    (record,) = index.instances(good.StudyInstanceUID)
    assert (record.sop_instance_uid, record.sop_class_uid) == (good.SOPInstanceUID, SpatialRegistrationStorage)
    assert pydicom.dcmread(record.path).RegistrationSequence == good.RegistrationSequence  # the stored copy
    assert _rejected("registration") - before == len(expected)
    assert INGEST_REGISTRY.get_sample_value("rcds_instances_received_total", {"kind": "reg"}) == received + 1


def _ct_seg_label_map(data_dir: Path) -> pydicom.Dataset:
    """The liver of the ct-seg case as a LABELMAP SEG (Label Map Segmentation Storage), by highdicom."""
    slices = sorted((pydicom.dcmread(f) for f in (data_dir / "ct-seg" / "ct").glob("*.dcm")),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))
    labels = np.zeros((len(slices), slices[0].Rows, slices[0].Columns), dtype=np.uint8)
    labels[:, 200:300, 150:250] = 1
    return highdicom_seg(slices, labels, {1: "Liver"})


def test_label_map_and_binary_segs_are_stored_and_one_claiming_too_many_frames_is_refused(listener, data_dir):
    """Both SEG SOP classes are offered, stored and indexed as the SEG they are; the LABELMAP's
    header claims are checked like any image's."""
    port, index = listener
    label_map = _ct_seg_label_map(data_dir)
    binary = pydicom.dcmread(data_dir / "ct-seg" / "liver.dcm")
    too_many = copy.deepcopy(label_map)
    too_many.NumberOfFrames, too_many.SOPInstanceUID = 2_000_000, pydicom.uid.generate_uid()
    sender = AE(ae_title="MODALITY")
    for ds in (label_map, binary):
        sender.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    association = sender.associate(LOOPBACK, port, ae_title=OUR_AE)
    assert association.is_established
    try:
        answers = [association.send_c_store(ds) for ds in (label_map, binary, too_many)]
    finally:
        association.release()
    assert [(a.Status, a.get("ErrorComment")) for a in answers] == [
        (0x0000, None), (0x0000, None), (STATUS_CANNOT_UNDERSTAND, "NumberOfFrames 2000000 over the limit of 5000")]
    indexed = {r.sop_instance_uid: r.sop_class_uid for s in {label_map.StudyInstanceUID, binary.StudyInstanceUID}
               for r in index.instances(s)}
    assert indexed == {label_map.SOPInstanceUID: "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
                       binary.SOPInstanceUID: "1.2.840.10008.5.1.4.1.1.66.4"}  # Segmentation Storage
