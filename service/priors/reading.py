"""One of our TID 1500 SRs read back into plain data: what lesion matching and change need.

The SR is read with highdicom's public accessors (the same way any other program would read
it), not from our in-memory result: a prior exists only as the SR in PACS. `show` reads an SR
through this module too (service/report.py), so there is one reader of our SRs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from service.errors import InputError
from service.location import anatomic_region_class
from service.model import CodedConcept, Vector3
from service.outputs import codes
from service.outputs.feature_codes import RING_REGION
from service.sop_classes import CT_SOP_CLASSES
from service.priors.library import ScannedCt, read_scanned_ct

_TRACKING_IDENTIFIER = re.compile(r"^(?P<name>.*) \((?:ROI|Segment) \d+\)$")
"""How service.imaging.crops.tracking_identity names a lesion: "<ROI name> (ROI <number>)"."""


class _Concept(Protocol):
    """A coded concept: pydicom's Code and highdicom's CodedConcept both have these."""

    @property
    def value(self) -> str: ...

    @property
    def scheme_designator(self) -> str: ...


def feature_key(name: _Concept, derivation: _Concept | None, region: _Concept) -> str:
    """A radiomics feature's key, from its codes: "<region>/<scheme>:<name>[/<scheme>:<derivation>]".

    The SR holds codes, not our feature tags; keying both sides by the codes (the current
    lesion's through service.outputs.feature_codes) compares features without a reverse table.
    """
    key = f"{region.value}/{name.scheme_designator}:{name.value}"
    return key if derivation is None else f"{key}/{derivation.scheme_designator}:{derivation.value}"


CHANGE_CODES = (codes.LD_MM_BASELINE, codes.LD_PCT_BASELINE, codes.LD_PCT_PREVIOUS, codes.VOLUME_PCT_BASELINE,
                codes.CD8_SCORE_DELTA, codes.MATCH_DISTANCE)
"""The change NUMs of a follow-up's lesion group (service.outputs.codes): what `show` reads back."""


@dataclass(frozen=True)
class PriorLesion:
    """One lesion of a prior SR: its TID 1411 groups (core and ring, one Tracking UID) as one."""

    tracking_identifier: str
    tracking_uid: str
    name: str  # the ROI or segment name, when the identifier carries one; else the identifier
    location: str | None  # finding site meaning; None: "other"
    centroid_mm: Vector3 | None
    frame_of_reference_uid: str | None
    volume_ml: float | None
    longest_axial_mm: float | None
    short_axis_mm: float | None
    max_3d_mm: float | None
    score: float | None  # CD8 score; None when it was not computable
    features: dict[str, float]  # feature_key -> value
    evaluations: frozenset[tuple[str, str]]  # (code value, scheme) of the qualitative evaluations
    changes: dict[str, float] = field(default_factory=dict)  # CHANGE_CODES value -> NUM; empty: not compared
    baseline_category: str | None = None  # a codes.BASELINE_CATEGORIES key; None: the SR states none
    derived_from_uid: str | None = None  # a split fragment's parent tracking UID
    merged_uids: tuple[str, ...] = ()  # the lesions merged into this one (0 mm since)
    not_evaluable_as_new: bool = False  # first seen outside the scan before's coverage: never new


@dataclass(frozen=True)
class CarriedSums:
    """What a prior report's RECIST 1.1 assessment states of the series before it: the baseline
    and nadir sums of diameters (SODBL, SODNADIR; None when not computable there) and the
    group's Tracking UID, derived from the baseline study's UID (service.comparison), which
    tells a later report whether it measures from the same baseline."""

    baseline_sod_mm: float | None
    nadir_sod_mm: float | None
    assessment_uid: str | None


@dataclass(frozen=True)
class PriorReport:
    """A prior SR as data: its identity, its study and its lesions."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    study_date: str
    study_time: str
    frame_of_reference_uid: str | None  # of the lesion centroids; None without lesions
    algorithm_version: str
    lesions: tuple[PriorLesion, ...]
    notes: tuple[str, ...]  # the report's TEXT comments, in order
    # the scored CT series named in the SR's evidence: what a registration needs of the prior study
    ct_series_instance_uid: str | None = None
    ct: ScannedCt = ScannedCt(None, None, None, None)  # extent and acquisition, from the image library
    irecist_state: str | None = None  # the carried iRECIST state (JSON); None: no response assessment
    sums: CarriedSums | None = None  # None: no response assessment


def read_prior_report(dataset: Dataset) -> PriorReport:
    """Read one of our SRs; InputError when it is not a readable TID 1500 SR."""
    try:
        sr = hd.sr.Comprehensive3DSR.from_dataset(dataset, copy=False)
        groups = cast(hd.sr.MeasurementReport, sr.content).get_volumetric_roi_measurement_groups()
        lesions = tuple(_lesion(same) for same in _by_lesion(groups))
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise InputError(f"SR content is not a readable TID 1500 report ({type(error).__name__})") from None
    frames = [lesion.frame_of_reference_uid for lesion in lesions if lesion.frame_of_reference_uid]
    return PriorReport(
        sop_instance_uid=str(dataset.SOPInstanceUID),
        series_instance_uid=str(dataset.SeriesInstanceUID),
        study_instance_uid=str(dataset.StudyInstanceUID),
        study_date=str(dataset.get("StudyDate", "")),
        study_time=str(dataset.get("StudyTime", "")),
        frame_of_reference_uid=frames[0] if frames else None,
        algorithm_version=str(dataset.get("SoftwareVersions", "")),
        lesions=lesions,
        notes=tuple(_comments(dataset)),
        ct_series_instance_uid=_ct_series(dataset),
        ct=read_scanned_ct(dataset, frames[0] if frames else None),
        irecist_state=_irecist_state(dataset),
        sums=_carried_sums(dataset),
    )


def _ct_series(dataset: Dataset) -> str | None:
    """The first CT series in the SR's Current Requested Procedure Evidence (ours holds one)."""
    for study in dataset.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            if any(str(item.get("ReferencedSOPClassUID", "")) in CT_SOP_CLASSES
                   for item in series.get("ReferencedSOPSequence", [])):
                return str(series.SeriesInstanceUID)
    return None


_Group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations


def _by_lesion(groups: Sequence[_Group]) -> list[list[_Group]]:
    """The TID 1411 groups per lesion (per Tracking UID), lesions in the order of their first group.

    Our SRs give each lesion a core group and a peritumoral ring group with the same Tracking
    UID (service.outputs.sr); SRs written before that give it one group holding both regions.
    Either way one Tracking UID is one lesion.
    """
    lesions: dict[str, list[_Group]] = {}
    for group in groups:
        lesions.setdefault(str(group.tracking_uid), []).append(group)
    return list(lesions.values())


def _is_ring(group: _Group) -> bool:
    method = group.method
    return method is not None and (method.value, method.scheme_designator) == (
        RING_REGION.value, RING_REGION.scheme_designator)


def _lesion(groups: Sequence[_Group]) -> PriorLesion:
    """One lesion from its groups: sizes, statements and items from the lesion (core) group,
    features from all of them, each keyed by the region its measurement states."""
    group = next((g for g in groups if not _is_ring(g)), None)
    if group is None:
        raise InputError("SR has a peritumoral ring group without its lesion group")
    sizes: dict[tuple[str, str], float] = {}
    features: dict[str, float] = {}
    for measurement in group.get_measurements():
        if measurement.method is None:
            sizes[(measurement.name.value, measurement.name.scheme_designator)] = float(measurement.value)
    for measurement in (m for g in groups for m in g.get_measurements()):
        if measurement.method is not None:
            features[feature_key(measurement.name, measurement.derivation, measurement.method)] = float(
                measurement.value)

    def size(code: _Concept) -> float | None:
        return sizes.get((code.value, code.scheme_designator))

    identifier = str(group.tracking_identifier)
    named = _TRACKING_IDENTIFIER.match(identifier)
    centroid, frame = _centroid(group)
    return PriorLesion(
        tracking_identifier=identifier,
        tracking_uid=str(group.tracking_uid),
        name=named.group("name") if named else identifier,
        location=_location(group),
        centroid_mm=centroid,
        frame_of_reference_uid=frame,
        volume_ml=size(codes.VOLUME),
        longest_axial_mm=size(codes.LONG_AXIS),
        short_axis_mm=size(codes.SHORT_AXIS),
        max_3d_mm=size(codes.MAX_3D_DIAMETER),
        score=size(codes.CD8_SCORE),
        features=features,
        evaluations=frozenset((e.value.value, e.value.scheme_designator) for e in group.get_qualitative_evaluations()
                              if isinstance(e.value, hd.sr.CodedConcept)),
        changes={code.value: value for code in CHANGE_CODES if (value := size(code)) is not None},
        baseline_category=_baseline_category(group),
        derived_from_uid=next(iter(_uid_items(group, codes.DERIVED_FROM_TRACKING_UID)), None),
        merged_uids=_uid_items(group, codes.MERGED_TRACKING_UID),
        not_evaluable_as_new=_says_yes(group, codes.NOT_EVALUABLE_AS_NEW),
    )


_BASELINE_CATEGORY_KEYS = {(code.value, code.scheme_designator): key for key, code in codes.BASELINE_CATEGORIES.items()}


def _location(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) -> str | None:
    """The finding site as the body structure of the location class it names (its meaning), or
    None ("other") when it names none.

    The class's own site reads as itself, as in every SR so far; a SEG segment's own code (SRs
    since the finding site is the segment's) reads as the class scoring gave it, e.g. "Head" as
    head and neck, "Lymph node structure" as a node, so follow-up treats the lesion alike.
    """
    if not group.finding_sites:
        return None
    site = group.finding_sites[0].value
    location = anatomic_region_class(CodedConcept(site.value, site.scheme_designator, site.meaning))
    region = codes.finding_site(location) if location is not None else None
    return region.meaning if region is not None else None


def _baseline_category(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) -> str | None:
    """The lesion's Baseline Category (DCM 112016, CID 6145), as the baseline report chose it."""
    for evaluation in group.get_qualitative_evaluations(name=codes.BASELINE_CATEGORY):
        if isinstance(evaluation.value, hd.sr.CodedConcept):
            return _BASELINE_CATEGORY_KEYS.get((evaluation.value.value, evaluation.value.scheme_designator))
    return None


def _says_yes(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations, name: Code) -> bool:
    """Does the group state `name` as Yes?"""
    return any(isinstance(evaluation.value, hd.sr.CodedConcept) and evaluation.value == codes.YES
               for evaluation in group.get_qualitative_evaluations(name=name))


def _uid_items(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations, name: _Concept) -> tuple[str, ...]:
    """The values of the group's UIDREF items named `name`, in their order."""
    items: list[Dataset] = list(group[0].ContentSequence)
    return tuple(str(item.UID) for item in items
                 if item.ValueType == "UIDREF" and (item.ConceptNameCodeSequence[0].CodeValue,
                                                    item.ConceptNameCodeSequence[0].CodingSchemeDesignator)
                 == (name.value, name.scheme_designator))


def _assessment_items(dataset: Dataset) -> list[Dataset] | None:
    """The content items of the RECIST 1.1 assessment group (the one holding IRECISTSTATE)."""
    for container in dataset.get("ContentSequence") or []:  # Imaging Measurements, ...
        for group in container.get("ContentSequence") or []:
            children = list(group.get("ContentSequence") or [])
            if any(_is(child, "TEXT", codes.IRECIST_STATE) for child in children):
                return children
    return None


def _is(item: Dataset, value_type: str, name: _Concept) -> bool:
    concept = item.get("ConceptNameCodeSequence")
    return bool(item.get("ValueType") == value_type and concept and (
        concept[0].CodeValue, concept[0].CodingSchemeDesignator) == (name.value, name.scheme_designator))


def _irecist_state(dataset: Dataset) -> str | None:
    """The TEXT item IRECISTSTATE of the RECIST 1.1 assessment group, if the report has one."""
    items = _assessment_items(dataset) or []
    return next((str(item.TextValue) for item in items if _is(item, "TEXT", codes.IRECIST_STATE)), None)


def _carried_sums(dataset: Dataset) -> CarriedSums | None:
    """SODBL, SODNADIR and the Tracking UID of the RECIST 1.1 assessment group, if the report has one."""
    items = _assessment_items(dataset)
    if items is None:
        return None

    def number(name: _Concept) -> float | None:
        for item in items:
            if _is(item, "NUM", name) and item.get("MeasuredValueSequence"):  # its FloatingPointValue if any
                return float(hd.sr.NumContentItem.from_dataset(item, copy=False).value)
        return None

    uid = next((str(item.UID) for item in items if _is(item, "UIDREF", codes.TRACKING_UID)), None)
    return CarriedSums(number(codes.SOD_BASELINE), number(codes.SOD_NADIR), uid)


def _centroid(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) -> tuple[Vector3 | None, str | None]:
    """The "Center of Mass" SCOORD3D point of the group and its Frame of Reference."""
    for item in group[0].ContentSequence:
        name = item.ConceptNameCodeSequence[0]
        if item.ValueType == "SCOORD3D" and name.CodeValue == codes.CENTER_OF_MASS.value:
            x, y, z = (float(v) for v in item.GraphicData[:3])
            return (x, y, z), str(item.ReferencedFrameOfReferenceUID)
    return None, None


def _comments(item: Dataset) -> list[str]:
    """Every TEXT "Comment" of the content tree, in order: the report's notes for a reader."""
    found = []
    for child in item.get("ContentSequence") or []:
        name = child.get("ConceptNameCodeSequence")
        if child.get("ValueType") == "TEXT" and name and name[0].CodeValue == codes.COMMENT.value:
            found.append(str(child.TextValue))
        found.extend(_comments(child))
    return found
