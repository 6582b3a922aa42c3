"""Errors and warnings about a study's inputs name no DICOM UID: instances by role, Instance
Number or position, series and Frames of Reference by role and count. They are shown to users,
stored as the study's error and printed by `status`, and a UID can identify the patient's study.
The UIDs go to the DEBUG log only, for a developer.

Spool files are named by their SOP Instance UID (service.ingest.spool), so the damaged files
here are too, in a folder named by the study's UID. Every message is checked against every UID
of the objects involved (tests/support/uids.py), so a UID that slips in by any route fails.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from service.errors import FrameOfReferenceMismatch, InputError
from service.imaging.contours import rtstruct_to_masks, seg_to_masks
from service.imaging.selection import (
    DEFERRED_VALUE_BYTES, read_instance, read_study_headers, read_study_instance, select_inputs,
)
from service.imaging.volume import load_ct_series
from service.sop_classes import sop_class_name
from tests.support import small_study
from tests.support.uids import uids_in, uids_of


def _spooled(folder: Path, datasets: list[Dataset]) -> list[Path]:
    """The datasets as spool files: named by SOP Instance UID, in a folder named by the study's."""
    folder = folder / small_study.STUDY_UID
    folder.mkdir(parents=True)
    paths = [folder / f"{ds.SOPInstanceUID}.dcm" for ds in datasets]
    for ds, path in zip(datasets, paths):
        ds.save_as(path, enforce_file_format=True)
    return paths


def _damaged(path: Path) -> Path:
    """`path` as Deflated Explicit VR Little Endian, its deflated body replaced by bytes zlib
    cannot inflate: DICOM (preamble, prefix, file meta) that pydicom cannot parse. (pydicom reads
    a truncated or malformed uncompressed file without complaint.)"""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert data[128:132] == b"DICM" and data[132:138] == b"\x02\x00\x00\x00UL"  # file meta group length
    body = 144 + int.from_bytes(data[140:144], "little")
    path.write_bytes(data[:body] + b"\xff" * 64)
    return path


def _assert_no_uid(message: str, uids: set[str]) -> None:
    assert uids, "the test must know the UIDs it looks for"
    assert uids_in(message, uids) == [], message
    assert "uid:" not in message, message  # not even the redacted token: no UID went in


def _other_frame(rtstruct: Dataset, frame: str) -> Dataset:
    rtstruct.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = frame
    for roi in rtstruct.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = frame
    return rtstruct


def test_contours_in_a_frame_no_ct_series_is_in(caplog) -> None:
    ct, other = small_study.ct_slices(), generate_uid()
    rtstruct = _other_frame(small_study.rtstruct(), other)
    with caplog.at_level(logging.DEBUG, logger="service"), pytest.raises(FrameOfReferenceMismatch) as error:
        select_inputs([*ct, rtstruct])
    message = str(error.value)
    assert message == ("the contours are in a Frame of Reference that none of the 1 received CT series is in "
                       "(those are in 1 other Frame(s) of Reference): the contours were drawn on another scan")
    _assert_no_uid(message, uids_of([*ct, rtstruct]))
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(other in line and small_study.FRAME_UID in line for line in debug)  # for a developer
    assert not any(other in r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)


def test_contours_without_a_frame_of_reference() -> None:
    ct, rtstruct = small_study.ct_slices(), _other_frame(small_study.rtstruct(), "")
    with pytest.raises(FrameOfReferenceMismatch, match="the contours state no Frame of Reference, so none of "
                                                       "the 1 received CT series can be matched to them"):
        select_inputs([*ct, rtstruct])


def test_two_series_in_the_contours_frame_neither_referenced() -> None:
    ct, twin = small_study.ct_slices(), small_study.ct_slices()
    twin_series = generate_uid()
    for ds in twin:
        ds.SeriesInstanceUID = twin_series
    rtstruct = small_study.rtstruct()
    del rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence
    with pytest.raises(InputError) as error:
        select_inputs([*ct, *twin, rtstruct])
    assert str(error.value) == ("2 CT series share the contours' Frame of Reference and the contours reference "
                                "none of them unambiguously")
    _assert_no_uid(str(error.value), uids_of([*ct, *twin, rtstruct]))


def test_the_warning_on_several_contour_objects_names_no_uid() -> None:
    ct, first, last = small_study.ct_slices(), small_study.rtstruct(), small_study.rtstruct()
    inputs, warnings = select_inputs([*ct, first, last])
    assert inputs.contours.SOPInstanceUID == last.SOPInstanceUID
    assert warnings == ["2 contour objects received; scored the last received"]


def test_a_seg_or_an_roi_in_another_frame_is_named_by_role() -> None:
    ct_slices = small_study.ct_slices()
    ct = load_ct_series(ct_slices)
    seg = small_study.seg()
    seg.FrameOfReferenceUID = generate_uid()
    with pytest.raises(FrameOfReferenceMismatch) as error:
        seg_to_masks(seg, ct)
    assert str(error.value) == ("the SEG is in another Frame of Reference than the CT series it is to be placed "
                                "on: it was drawn on another scan")
    _assert_no_uid(str(error.value), uids_of([*ct_slices, seg]))

    rtstruct = small_study.rtstruct()
    rtstruct.StructureSetROISequence[1].ReferencedFrameOfReferenceUID = generate_uid()
    with pytest.raises(FrameOfReferenceMismatch) as error:
        rtstruct_to_masks(rtstruct, ct)
    assert str(error.value).startswith("ROI 2 of the RTSTRUCT is in another Frame of Reference than the CT series")
    _assert_no_uid(str(error.value), uids_of([*ct_slices, rtstruct]))

    del rtstruct.StructureSetROISequence[1].ReferencedFrameOfReferenceUID
    with pytest.raises(FrameOfReferenceMismatch, match="^ROI 2 of the RTSTRUCT states no Frame of Reference"):
        rtstruct_to_masks(rtstruct, ct)


@pytest.mark.parametrize("ct_image", [True, False], ids=["ct-image", "contours"])
def test_a_damaged_spool_file_is_named_by_its_role(tmp_path: Path, ct_image: bool, caplog) -> None:
    dataset = small_study.ct_slices()[0] if ct_image else small_study.rtstruct()
    (path,) = _spooled(tmp_path, [dataset])
    _damaged(path)
    with caplog.at_level(logging.DEBUG, logger="service"), pytest.raises(InputError) as error:
        read_study_instance(path, ct_image=ct_image)
    role = "a CT image of the study" if ct_image else "an instance of the study other than its CT images"
    assert str(error.value).startswith(f"{role} cannot be read as DICOM (")
    _assert_no_uid(str(error.value), uids_of([dataset]) | {small_study.STUDY_UID})
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)


def test_a_vanished_file_is_named_by_its_role_not_its_path(tmp_path: Path) -> None:
    """pydicom's own message names the path, here all UIDs: those are left out too."""
    dataset = small_study.ct_slices()[0]
    (path,) = _spooled(tmp_path, [dataset])
    path.unlink()
    with pytest.raises(InputError) as error:
        read_instance(path, header_only=True)
    assert str(error.value).startswith("a stored instance cannot be read as DICOM (FileNotFoundError: ")
    assert dataset.SOPInstanceUID not in str(error.value) and small_study.STUDY_UID not in str(error.value)


def test_a_damaged_file_of_a_ct_folder_is_named_by_its_position(tmp_path: Path) -> None:
    ct = small_study.ct_slices()
    paths = _spooled(tmp_path, ct)
    (contour_file,) = small_study.write(tmp_path / "rt", [small_study.rtstruct()])
    damaged = sorted(paths)[2]
    _damaged(damaged)
    with pytest.raises(InputError) as error:
        read_study_headers(damaged.parent, contour_file)
    assert str(error.value).startswith("file 3 of 4 (by name) of the CT folder cannot be read as DICOM (")
    _assert_no_uid(str(error.value), uids_of(ct) | {small_study.STUDY_UID})

    shutil.copy(contour_file, tmp_path / "contours.dcm")
    _damaged(tmp_path / "contours.dcm")
    damaged.unlink()
    with pytest.raises(InputError, match=r"^the contour file cannot be read as DICOM \("):
        read_study_headers(damaged.parent, tmp_path / "contours.dcm")


def test_pixel_data_gone_since_the_header_was_read_names_the_instance_number(tmp_path: Path) -> None:
    """Pixel data longer than read_study_instance reads with the header (DEFERRED_VALUE_BYTES)
    is read when the series is chosen; the file changed since (the error comes before the
    series is stacked, so the extra bytes need not make sense)."""
    ct = small_study.ct_slices()
    for number, ds in enumerate(ct, start=1):
        ds.InstanceNumber = number
        ds.PixelData = bytes(2 * DEFERRED_VALUE_BYTES)
    paths = _spooled(tmp_path, ct)
    rtstruct = small_study.rtstruct()
    datasets = [read_study_instance(path, ct_image=True) for path in paths]
    replaced = pydicom.dcmread(paths[1])
    replaced.ImageComments = "x" * 200  # moves PixelData 200 bytes on
    replaced.save_as(paths[1])
    with pytest.raises(InputError) as error:
        select_inputs([*datasets, rtstruct])
    assert str(error.value).startswith("CT instance number 2: its pixel data cannot be read (")
    _assert_no_uid(str(error.value), uids_of([*ct, rtstruct]))


def test_a_private_sop_class_is_named_without_its_uid():
    """pydicom's UID.name is the UID itself for a class outside the standard (a vendor's root)."""
    assert sop_class_name("1.2.840.10008.5.1.4.1.1.481.3") == "RT Structure Set Storage"
    assert sop_class_name("1.3.6.1.4.1.9590.100.1.2.99") == "a private or unknown SOP Class"
    assert sop_class_name(None) == "a private or unknown SOP Class"
