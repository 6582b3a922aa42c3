"""Which Frame of Reference an instance's geometry is in (images, RTSTRUCT, SEG alike)."""

from __future__ import annotations

from pydicom.dataset import Dataset

from service.sop_classes import RT_STRUCTURE_SET


def frame_of_reference(dataset: Dataset) -> str:
    """The Frame of Reference UID, "" when the instance names none.

    An RTSTRUCT has no FrameOfReferenceUID of its own: its frame is in
    ReferencedFrameOfReferenceSequence, or per ROI in StructureSetROISequence.
    """
    if dataset.get("SOPClassUID") == RT_STRUCTURE_SET:
        frames = dataset.get("ReferencedFrameOfReferenceSequence") or []
        if frames:
            return str(frames[0].get("FrameOfReferenceUID", ""))
        rois = dataset.get("StructureSetROISequence") or []
        return str(rois[0].get("ReferencedFrameOfReferenceUID", "")) if rois else ""
    return str(dataset.get("FrameOfReferenceUID", ""))
