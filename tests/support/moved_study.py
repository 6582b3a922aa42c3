"""A synthetic follow-up of a real CT + RTSTRUCT study in a new Frame of Reference: the patient
moved by a rigid transform known in advance.

The CT keeps its grid (same slice positions, same pixels' places) but its voxels show the
baseline anatomy moved by `transform` (x -> R x + t in patient coordinates): current(x) =
baseline(transform^-1 x), resampled with SimpleITK here. Every UID is new (study, series,
instances, Frame of Reference) and the RTSTRUCT's contour points are moved by the same
transform, so the expected position of any baseline point in the follow-up is computed by the
test, never taken from the service. The rotation is about z and the translation in-plane, so
every contour stays on its slice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import generate_uid

from service.imaging.volume import read_ct_directory
from service.registration import sitk_image


def rigid_about_z(degrees: float, translation_mm: tuple[float, float, float], centre: np.ndarray) -> np.ndarray:
    """The 4x4 of a rotation by `degrees` about the z axis through `centre`, then a translation."""
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre + np.asarray(translation_mm) - rotation @ centre
    return matrix


def contour_points(rtstruct: Path) -> np.ndarray:
    """Every contour point of the RTSTRUCT (N x 3, mm)."""
    rs = pydicom.dcmread(rtstruct)
    return np.concatenate([np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
                           for roi in rs.ROIContourSequence for c in roi.ContourSequence])


def write_moved_follow_up(ct_dir: Path, rtstruct: Path, out: Path, transform: np.ndarray, *, study_date: str,
                          roi_name: str) -> tuple[Path, Path]:
    """(CT directory, RTSTRUCT file) of the moved follow-up, written under `out`; the ROIs are
    renamed `roi_name` so that only geometry can match them."""
    ct = read_ct_directory(ct_dir)
    image = sitk_image(ct)
    inverse = np.linalg.inv(transform)
    resampler = sitk.AffineTransform(inverse[:3, :3].ravel().tolist(), inverse[:3, 3].tolist())
    moved = sitk.GetArrayFromImage(sitk.Resample(image, image, resampler, sitk.sitkLinear, -1024.0))
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    ct_out, rs_out = out / "ct", out / "rtstruct"
    ct_out.mkdir(parents=True)
    rs_out.mkdir(parents=True)
    new_sop: dict[str, str] = {}
    for path in sorted(ct_dir.iterdir()):
        ds = pydicom.dcmread(path)
        z = ct.sop_instance_uids.index(ds.SOPInstanceUID)
        stored = (moved[z] - float(ds.RescaleIntercept)) / float(ds.RescaleSlope)
        ds.PixelData = np.round(stored).astype(ds.pixel_array.dtype).tobytes()
        new_sop[ds.SOPInstanceUID] = ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = study_date
        ds.save_as(ct_out / path.name)
    rs = pydicom.dcmread(rtstruct)
    rs.StudyInstanceUID, rs.StudyDate = study, study_date
    rs.SOPInstanceUID = rs.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    rs.SeriesInstanceUID = generate_uid()
    for reference in rs.ReferencedFrameOfReferenceSequence:
        reference.FrameOfReferenceUID = frame
        for study_ref in reference.get("RTReferencedStudySequence", []):
            study_ref.ReferencedSOPInstanceUID = study
            for series_ref in study_ref.get("RTReferencedSeriesSequence", []):
                series_ref.SeriesInstanceUID = series
                for image_ref in series_ref.get("ContourImageSequence", []):
                    image_ref.ReferencedSOPInstanceUID = new_sop.setdefault(image_ref.ReferencedSOPInstanceUID, generate_uid())
    for roi in rs.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID, roi.ROIName = frame, roi_name
    for roi in rs.ROIContourSequence:
        for contour in roi.ContourSequence:
            points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
            moved_points = points @ transform[:3, :3].T + transform[:3, 3]
            contour.ContourData = [f"{v:.6f}" for v in moved_points.ravel()]
            for image_ref in contour.get("ContourImageSequence", []):
                image_ref.ReferencedSOPInstanceUID = new_sop.setdefault(image_ref.ReferencedSOPInstanceUID, generate_uid())
    target = rs_out / "RS.dcm"
    rs.save_as(target)
    return ct_out, target


def spatial_registration(path: Path, current_ct: Path, prior_frame: str, prior_to_current: np.ndarray) -> None:
    """A Spatial Registration object in the current frame that maps `prior_frame` into it."""
    header = pydicom.dcmread(next(p for p in sorted(current_ct.iterdir())), stop_before_pixels=True)
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate"):
        setattr(ds, keyword, header.get(keyword, ""))
    ds.Modality, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "REG", generate_uid(), header.FrameOfReferenceUID

    def item(frame: str, matrix: np.ndarray) -> pydicom.Dataset:
        entry = pydicom.Dataset()
        entry.FrameOfReferenceTransformationMatrixType = "RIGID"
        entry.FrameOfReferenceTransformationMatrix = [f"{v:.10g}" for v in matrix.ravel()]
        registration = pydicom.Dataset()
        registration.MatrixSequence = [entry]
        registered = pydicom.Dataset()
        registered.FrameOfReferenceUID = frame
        registered.MatrixRegistrationSequence = [registration]
        return registered

    ds.RegistrationSequence = [item(header.FrameOfReferenceUID, np.eye(4)), item(prior_frame, prior_to_current)]
    ds.save_as(path, enforce_file_format=True)
