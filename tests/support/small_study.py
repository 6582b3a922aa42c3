"""A tiny, valid study built in memory: a CT of 4 axial slices of 8 x 8 pixels (single-frame or
one Enhanced CT instance), an RTSTRUCT and a BINARY SEG on it.

It is small so that property-based tests can take it apart thousands of times a minute; it is
complete (every attribute the readers use) so that each mutation tests one defect, not the
absence of everything else. Geometry: origin (-4, -4, 0) mm, 1 mm pixels, 2 mm slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

from service.sop_classes import RT_STRUCTURE_SET, SEGMENTATION

SLICES, ROWS, COLUMNS = 4, 8, 8
ORIGIN = (-4.0, -4.0, 0.0)
PIXEL_MM, SLICE_MM = 1.0, 2.0
STUDY_UID, SERIES_UID, FRAME_UID = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3"
DIMENSIONS_UID = "1.2.826.0.1.3680043.8.498.4"


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _instance(sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, generate_uid(), modality
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID = "SMALL", "Small^Study", STUDY_UID
    return ds


def _image_pixel(ds: Dataset, bits: int) -> None:
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLUMNS, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if bits == 16 else 0


def slice_z(k: int) -> float:
    return ORIGIN[2] + k * SLICE_MM


def _hu(k: int) -> np.ndarray:
    return (np.arange(ROWS * COLUMNS, dtype=np.int16).reshape(ROWS, COLUMNS) * 10 + k).astype(np.int16)


def _ct_header(sop_class: str) -> Dataset:
    ds = _instance(sop_class, "CT")
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = SERIES_UID, FRAME_UID
    _image_pixel(ds, 16)
    return ds


def ct_slices() -> list[Dataset]:
    """The CT as 4 CT Image Storage instances."""
    slices = []
    for k in range(SLICES):
        ds = _ct_header(CTImageStorage)
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], slice_z(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [PIXEL_MM, PIXEL_MM]
        ds.RescaleSlope, ds.RescaleIntercept, ds.KVP = 1, -1024, 120
        ds.PixelData = _hu(k).tobytes()
        slices.append(ds)
    return slices


def enhanced_ct() -> Dataset:
    """The same CT as one Enhanced CT instance (shared geometry, per-frame positions)."""
    ds = _ct_header(EnhancedCTImageStorage)
    ds.NumberOfFrames = SLICES
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[PIXEL_MM, PIXEL_MM])]),
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
        PixelValueTransformationSequence=Sequence([_item(RescaleSlope=1, RescaleIntercept=-1024)]),
    )])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        _item(PlanePositionSequence=Sequence([_item(ImagePositionPatient=[ORIGIN[0], ORIGIN[1], slice_z(k)])]))
        for k in range(SLICES)
    ])
    ds.PixelData = b"".join(_hu(k).tobytes() for k in range(SLICES))
    return ds


def square_contour(k: int, low: float = -2.5, high: float = 1.5) -> list[float]:
    """ContourData of an axis-aligned square on slice k (mm), edges between voxel centres."""
    corners = [(low, low), (high, low), (high, high), (low, high)]
    return [v for x, y in corners for v in (x, y, slice_z(k))]


def rtstruct(contours: list[list[float]] | None = None) -> Dataset:
    """ROI 1 (GTV): squares on slices 1 and 2, or `contours`; ROI 2 (ORGAN) a square on slice 0."""
    ds = _instance(RT_STRUCTURE_SET, "RTSTRUCT")
    ds.SeriesInstanceUID = generate_uid()  # Type 1, its own series, as contouring systems write it
    ds.ReferencedFrameOfReferenceSequence = Sequence([_item(
        FrameOfReferenceUID=FRAME_UID,
        RTReferencedStudySequence=Sequence([_item(
            RTReferencedSeriesSequence=Sequence([_item(SeriesInstanceUID=SERIES_UID)])
        )]),
    )])
    ds.StructureSetROISequence = Sequence([
        _item(ROINumber=number, ReferencedFrameOfReferenceUID=FRAME_UID, ROIName=f"roi {number}")
        for number in (1, 2)
    ])
    lesion = contours if contours is not None else [square_contour(1), square_contour(2)]
    ds.ROIContourSequence = Sequence([
        _item(ReferencedROINumber=number, ContourSequence=Sequence([
            _item(ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(data) // 3, ContourData=data)
            for data in polygons
        ]))
        for number, polygons in ((1, lesion), (2, [square_contour(0)]))
    ])
    ds.RTROIObservationsSequence = Sequence([
        _item(ObservationNumber=number, ReferencedROINumber=number, RTROIInterpretedType=kind)
        for number, kind in ((1, "GTV"), (2, "ORGAN"))
    ])
    return ds


def seg() -> Dataset:
    """A BINARY SEG with one segment: a 3 x 3 square on slices 1 and 2, frames on the CT grid."""
    ds = _instance(SEGMENTATION, "SEG")
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), FRAME_UID
    _image_pixel(ds, 1)
    ds.SegmentationType, ds.NumberOfFrames = "BINARY", 2
    ds.ReferencedSeriesSequence = Sequence([_item(SeriesInstanceUID=SERIES_UID)])
    ds.SegmentSequence = Sequence([_item(
        SegmentNumber=1, SegmentLabel="lesion", SegmentAlgorithmType="MANUAL",
        SegmentedPropertyCategoryCodeSequence=Sequence([_code("49755003", "Morphologically Altered Structure")]),
        SegmentedPropertyTypeCodeSequence=Sequence([_code("108369006", "Neoplasm")]),
    )])
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[PIXEL_MM, PIXEL_MM], SliceThickness=SLICE_MM)]),
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
    )])
    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=DIMENSIONS_UID)])
    ds.DimensionIndexSequence = Sequence([
        _item(DimensionOrganizationUID=DIMENSIONS_UID, DimensionIndexPointer=pointer, FunctionalGroupPointer=group)
        for pointer, group in ((0x0062000B, 0x0062000A), (0x00200032, 0x00209113))  # segment, then position
    ])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        _item(
            FrameContentSequence=Sequence([_item(DimensionIndexValues=[1, index])]),
            PlanePositionSequence=Sequence([_item(ImagePositionPatient=[ORIGIN[0], ORIGIN[1], slice_z(k)])]),
            SegmentIdentificationSequence=Sequence([_item(ReferencedSegmentNumber=1)]),
        )
        for index, k in enumerate((1, 2), start=1)
    ])
    frames = np.zeros((2, ROWS, COLUMNS), dtype=np.uint8)
    frames[:, 2:5, 2:5] = 1
    ds.PixelData = np.packbits(frames.ravel(), bitorder="little").tobytes()
    return ds


def _code(value: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator="SCT", CodeMeaning=meaning)


def write(folder: Path, datasets: list[Dataset]) -> list[Path]:
    """Each dataset as a DICOM file in `folder` (created), named by position; their paths."""
    folder.mkdir(parents=True)
    paths = [folder / f"{k:03d}.dcm" for k in range(len(datasets))]
    for ds, path in zip(datasets, paths):
        ds.save_as(path, enforce_file_format=True)
    return paths
