"""A synthetic 512 x 512 CT series of any length, as DICOM files, for the tests and benchmarks
that need a clinically sized series (memory bounds, ingest throughput).

Pixels are a body-like phantom in HU that changes from slice to slice, so no two instances are
the same; geometry is axial, 0.78125 mm in-plane, 1 mm apart. The same slices can also be
written as one Enhanced CT instance (one very large instance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

ROWS, COLUMNS = 512, 512
SLICE_BYTES = ROWS * COLUMNS * 2
PIXEL_SPACING_MM, SLICE_SPACING_MM = 0.78125, 1.0
ORIGIN = (-200.0, -200.0, -300.0)


def slice_pixels(k: int) -> bytes:
    """A body-like phantom: air outside an ellipse of soft tissue with a denser core, in HU,
    varying along z so that every slice differs."""
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    body = ((x - 256) / 200.0) ** 2 + ((y - 256) / 150.0) ** 2 <= 1.0
    core = ((x - 256) / 40.0) ** 2 + ((y - 270) / 40.0) ** 2 <= 1.0 + 0.5 * np.sin(k / 40.0)
    hu = np.full((ROWS, COLUMNS), -1000, dtype=np.int16)
    hu[body] = 40
    hu[core] = 400 + k % 100
    return hu.tobytes()


def _common(ds: Dataset, study_uid: str, series_uid: str, frame_uid: str) -> None:
    ds.PatientName, ds.PatientID = "Synthetic^Large", "SYNTH-600"
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
    ds.ReferringPhysicianName, ds.Manufacturer = "", "radiomics-cds tests"
    ds.Modality, ds.SeriesNumber, ds.PositionReferenceIndicator = "CT", 1, ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def write_ct_series(folder: Path, study_uid: str, pixels: list[bytes]) -> tuple[str, ...]:
    """One CT Image Storage file per slice, CT0001.dcm onwards, in a new `folder`; returns the
    SOP Instance UIDs in slice order."""
    series_uid, frame_uid = generate_uid(), generate_uid()
    template = Dataset()
    _common(template, study_uid, series_uid, frame_uid)
    template.SOPClassUID = CTImageStorage
    template.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    template.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    template.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
    template.SliceThickness, template.KVP, template.AcquisitionNumber = SLICE_SPACING_MM, 120, 1
    template.RescaleIntercept, template.RescaleSlope, template.RescaleType = 0, 1, "HU"
    folder.mkdir()
    uids = []
    for k, data in enumerate(pixels):
        ds = template.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta = _file_meta(CTImageStorage, ds.SOPInstanceUID)
        z = ORIGIN[2] + k * SLICE_SPACING_MM
        ds.InstanceNumber, ds.SliceLocation = k + 1, z
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], z]
        ds.PixelData = data
        ds.save_as(folder / f"CT{k + 1:04d}.dcm", enforce_file_format=True)
        uids.append(str(ds.SOPInstanceUID))
    return tuple(uids)


def write_enhanced_ct(path: Path, study_uid: str, pixels: list[bytes]) -> str:
    """The slices as frames of one Enhanced CT instance (shared geometry, per-frame positions);
    returns its SOP Instance UID."""
    ds = Dataset()
    _common(ds, study_uid, generate_uid(), generate_uid())
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, generate_uid()
    ds.file_meta = _file_meta(EnhancedCTImageStorage, ds.SOPInstanceUID)
    ds.SeriesNumber, ds.InstanceNumber = 2, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentQualification, ds.BurnedInAnnotation = "PRODUCT", "NO"
    ds.AcquisitionDateTime, ds.ContentDate, ds.ContentTime = "20260101120000", "20260101", "120000"
    ds.NumberOfFrames = len(pixels)
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [PIXEL_SPACING_MM, PIXEL_SPACING_MM], SLICE_SPACING_MM
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transformation = Dataset()
    transformation.RescaleIntercept, transformation.RescaleSlope, transformation.RescaleType = 0, 1, "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transformation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(len(pixels)):
        position, content, frame = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SLICE_SPACING_MM]
        content.InStackPositionNumber, content.StackID = k + 1, "1"
        frame.PlanePositionSequence = Sequence([position])
        frame.FrameContentSequence = Sequence([content])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = b"".join(pixels)
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)
