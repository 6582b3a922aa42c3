"""Copies of a real study under new identities, as a modality would send a second study: fresh
Study/Series/SOP Instance UIDs (and a new Frame of Reference, or a slice left out, when asked)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import generate_uid


def copy_study(source: Path, target: Path, *, drop_slice: int | None = None, new_frame: bool = False) -> str:
    """A copy of a study with fresh Study/Series/SOP UIDs (and Frame of Reference if asked)."""
    study_uid = generate_uid()
    series = {}
    frame = generate_uid() if new_frame else None
    (target / "image").mkdir(parents=True)
    (target / "mask").mkdir()
    images = sorted((source / "image").iterdir())
    for k, path in enumerate(images):
        if k == drop_slice:
            continue
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series.setdefault("ct", generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(target / "image" / path.name)
    rs = pydicom.dcmread(source / "mask" / "RS.dcm")
    rs.StudyInstanceUID = study_uid
    rs.SeriesInstanceUID = generate_uid()
    rs.SOPInstanceUID = rs.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if frame:
        rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = frame
        for roi in rs.StructureSetROISequence:
            roi.ReferencedFrameOfReferenceUID = frame
    rs.save_as(target / "mask" / "RS.dcm")
    return study_uid
