"""A lesion keeps the identity its input gives it (docs/method.md section 5): a SEG segment's
TrackingUID and TrackingID, an RTSTRUCT ROI's ConceptualVolumeUID; only lesions without one get
a UID we derive. The inputs are the shared real SEG and RTSTRUCT with those attributes added."""

from __future__ import annotations

import copy

import pydicom
import pytest
from pydicom.uid import generate_uid

from service.imaging.contours import rtstruct_to_masks, seg_to_masks
from service.imaging.crops import lesion_crop, tracking_identity
from service.imaging.volume import read_ct_directory
from service.scoring.settings import ExtractionSettings
from tests.support.external import DATA_DIR, require_data

CT_SEG = DATA_DIR / "ct-seg"
STS_019 = DATA_DIR / "ct-rtstruct" / "STS_019"


@pytest.fixture(scope="module")
def seg_case():
    ct = read_ct_directory(require_data(CT_SEG / "ct"))
    return ct, pydicom.dcmread(require_data(CT_SEG / "partial_overlaps.dcm"))


def test_a_seg_segments_tracking_uid_and_id_are_the_lesions(seg_case) -> None:
    ct, seg = seg_case
    seg = copy.deepcopy(seg)
    tracked = generate_uid()
    seg.SegmentSequence[1].TrackingUID, seg.SegmentSequence[1].TrackingID = tracked, "liver lesion A"
    masks = {mask.number: mask for mask in seg_to_masks(seg, ct)}
    number = int(seg.SegmentSequence[1].SegmentNumber)
    crop = lesion_crop(ct, masks[number], ExtractionSettings())
    assert (crop.tracking_id, crop.tracking_uid) == ("liver lesion A", tracked)
    others = [lesion_crop(ct, mask, ExtractionSettings()) for n, mask in masks.items() if n != number]
    derived = {tracking_identity(ct.study_instance_uid, ct.frame_of_reference_uid, masks[n])[1] for n in masks
               if n != number}
    assert {crop.tracking_uid for crop in others} == derived and tracked not in derived


def test_an_rtstruct_rois_conceptual_volume_uid_is_the_lesions_tracking_uid() -> None:
    ct = read_ct_directory(require_data(STS_019 / "image"))
    rtstruct = pydicom.dcmread(STS_019 / "mask" / "RS.dcm")
    conceptual = generate_uid()
    rtstruct.StructureSetROISequence[0].ConceptualVolumeUID = conceptual
    (mask,) = rtstruct_to_masks(rtstruct, ct)
    crop = lesion_crop(ct, mask, ExtractionSettings())
    assert crop.tracking_uid == conceptual
    assert crop.tracking_id == f"{mask.name} (ROI {mask.number})"  # an RTSTRUCT has no TrackingID


def test_an_invalid_input_uid_is_not_carried(seg_case) -> None:
    ct, seg = seg_case
    seg = copy.deepcopy(seg)
    seg.SegmentSequence[0].TrackingUID = "not.a.uid"
    masks = seg_to_masks(seg, ct)
    number = int(seg.SegmentSequence[0].SegmentNumber)
    (mask,) = [m for m in masks if m.number == number]
    assert mask.tracking_uid is None
    uid = lesion_crop(ct, mask, ExtractionSettings()).tracking_uid
    assert uid == tracking_identity(ct.study_instance_uid, ct.frame_of_reference_uid, mask)[1] != "not.a.uid"
