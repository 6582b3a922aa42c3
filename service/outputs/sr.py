"""The DICOM output: a Comprehensive 3D SR holding a TID 1500 Measurement Report.

Why TID 1500: it is what PACS viewers and radiotherapy planning systems read for lesion
measurements, with TID 1411 groups per lesion (its core and its peritumoral ring) tied to the
contour they measure by a tracking identifier and UID, and a TID 1501 group for the
patient-level biomarkers.

How each lesion's contour is referenced (TID 1411 allows exactly one ROI reference per group):
- SEG: "Referenced Segment" (IMAGE item with the segment number) plus "Source series for
  segmentation" (the CT series), built with highdicom's ReferencedSegment.
- RTSTRUCT: "Region In Space" (DCM 130488), the COMPOSITE item TID 1410/1411 provide for
  regions defined in patient space by another object such as an RT Structure Set. highdicom
  0.28 recognises it when reading but has no constructor for it, so `_RoiGroup` adds that
  one item to a group highdicom builds. The alternatives fit worse: "Referenced
  Segment" is for SEG / Surface Segmentation only; a "Volume Surface" copy of the contours would
  duplicate the RTSTRUCT (and cannot express holes); a centroid POINT is not the ROI. The item
  references the structure set as a whole; which of its ROIs is the lesion is DCM 130489
  "Referenced Region of Interest Identifier", a TEXT holding the ROI Number (3006,0022), so a
  planning system finds the exact ROI (e.g. the SBRT candidate) without parsing the Tracking
  Identifier or the reader notes (which also name it). TID 1411 row 12c puts that TEXT under the
  COMPOSITE by HAS PROPERTIES, but the Comprehensive 3D SR IOD's relationship constraints allow
  HAS PROPERTIES only from TEXT, CODE, NUM and PNAME: dcmtk (dsrdump, and so DCMTK-based
  readers) refuses to read such a document and PixelMed reports the relationship as illegal. So the item is the
  group's own CONTAINS child, right after Region In Space (TID 1411 is extensible).

Each lesion has two TID 1411 groups with the same Tracking Identifier and UID, one per region
its radiomics features describe, the region being the group's Measurement Method: the core group
(the contoured lesion) with the sizes, the score, the statements, the change and the centroid as
a SCOORD3D point in the CT's Frame of Reference (for radiotherapy planning), and the peritumoral
ring group (only when the lesion has ring features). Each holds its region's IBSI-defined
radiomics features, coded as service.outputs.feature_codes explains. The document
lists the CT series in its image library (TID 1600: its first two and last images, which state
its extent), with the CT's kVp and convolution kernel among the group's descriptors, so that a
later study knows this one's extent and acquisition from the SR alone (service.priors.library); a re-scored study's SR references the SR it replaces
(Predecessor Documents Sequence). A follow-up's lesion groups add, under LESCHG, the delta of
every coded feature of their region; a split fragment names its parent's tracking UID.

Everything a reader must see (docs/method.md section 6) is in the report: algorithm identification
with the signature and its status on every measurement, and a TID 1500 "Qualitative
Evaluations" container of TEXT comments with the summary, what was not computable and why,
and the full provenance (engines, settings).

UIDs are derived, not random, so re-sending the same study yields the same SR instance that
PACS recognises, instead of a duplicate.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem, CodingSchemeResourceItem
from highdicom.sr.templates import _MeasurementsAndQualitativeEvaluations
from pydicom import Dataset
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.sr.coding import Code

from service.comparison import Comparison, FeatureDelta, LesionComparison, PriorSrReference, TimePointInfo
from service.errors import InputError
from service.uids import derived_uid
from service.model import LesionResult, LesionSource, Metric, Provenance, StudyInfo, StudyResult
from service.outputs import codes
from service.outputs.feature_codes import REGION_METHODS, feature_concept
from service.scoring.degenerate import undefined_features_text
from service.outputs.sr_method import method_as_concept_modifier
from service.outputs.sr_response import response_groups
from service.outputs.study_header import SPECIFIC_CHARACTER_SET, set_patient_and_study

MANUFACTURER = codes.MANUFACTURER
SERIES_DESCRIPTION = "radiomics-cds CD8 radiomics (decision support)"
SERIES_NUMBER = 9900
"""Fixed, so that every re-send of a study lands in the same, recognisable series."""
INSTANCE_NUMBER = 1
PATIENT_GROUP_IDENTIFIER = "Patient-level CD8 radiomics biomarkers"
_REFERENCE_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_REGION_IN_SPACE = Code("130488", "DCM", "Region In Space")
_ROI_IDENTIFIER = dicom_codes.DCM.ReferencedRegionOfInterestIdentifier
_IMAGE_LIBRARY = dicom_codes.DCM.ImageLibrary


class _Value(NamedTuple):
    """One numeric statement before it becomes a TID 300 Measurement."""

    name: Code
    value: float
    unit: Code
    derivation: Code | None = None
    method: Code | None = None  # for radiomics features: the region (core or ring)


class _RoiGroup(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations):
    """A TID 1411 group built from highdicom's TID 1501 base class plus its ROI reference.

    Two reasons. An RT Structure Set ROI ("Region In Space") has no constructor in highdicom,
    whose TID 1411 insists on a SEG, image-region or volume-surface reference; reading it back
    works through highdicom's public accessors, which list "Region In Space" among the TID 1411
    reference types. And for a SEG's Referenced Segment, highdicom's TID 1411 constructor
    searches every measurement's content tree for coordinates (not allowed in TID 1411): 0.29 of
    the 1.2 s a 10-lesion SR's build took under cProfile, for measurements that never carry
    any here (service.outputs.sr builds them without). The group is the same dataset as
    highdicom's own (tests/unit/test_sr.py).
    """

    def __init__(self, roi_reference: Sequence[Dataset], **group: Any) -> None:
        _MeasurementsAndQualitativeEvaluations.__init__(self, **group)
        self[0].ContentTemplateSequence[0].TemplateIdentifier = "1411"
        self[0].ContentSequence.extend(roi_reference)


class _ReportDocument(hd.sr.Comprehensive3DSR):
    """highdicom's Comprehensive 3D SR without its copy of the content tree.

    highdicom deep-copies the content it is given, parses the copy into its content-item
    classes (for its `content` accessor) and walks it twice for the instances it references:
    1.9 of the 2.9 s a 10-lesion SR's build took (profiled). Given the root container without
    its children, which are then set on the document, it builds the same document, byte for
    byte but for the creation time (tests/unit/test_sr.py holds it to highdicom's own build).
    What highdicom's walk checked, that every instance the content references (IMAGE and
    COMPOSITE items) is in the evidence, as the SR IOD requires, is checked here on the
    datasets themselves (milliseconds). `content` is parsed from the document at the first
    access: no caller of ours asks (readers parse the file).
    """

    def __init__(self, *, content: Dataset, evidence: Sequence[Dataset], **attributes: Any) -> None:
        missing = _referenced_instances(content) - {str(item.SOPInstanceUID) for item in evidence}
        if missing:
            raise ValueError(f"the report references {len(missing)} instance(s) that are not in its evidence")
        root = Dataset()
        for element in content:
            if element.keyword != "ContentSequence":
                root.add(element)
        root.ContentSequence = []
        super().__init__(content=root, evidence=evidence, **attributes)
        self.ContentSequence = content.ContentSequence

    @functools.cached_property
    def content(self) -> hd.sr.ContentSequence:
        return hd.sr.Comprehensive3DSR.from_dataset(self).content


def _referenced_instances(content: Dataset) -> set[str]:
    """The SOP Instance UIDs that the IMAGE and COMPOSITE items under `content` reference."""
    found: set[str] = set()
    pending = list(content.get("ContentSequence", []))
    while pending:
        item = pending.pop()
        if item.get("ValueType") in ("IMAGE", "COMPOSITE"):
            found.add(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
        pending.extend(item.get("ContentSequence", []))
    return found


def build_measurement_report(
    result: StudyResult,
    evidence: Sequence[Dataset],
    *,
    institution: str | None = None,
    predecessor: Dataset | None = None,
    comparison: Comparison = Comparison(),
    identity: SrIdentity | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The SR for a scored study; `evidence` = header-only datasets of the CT and contours.

    The caller's datasets are never modified: patient and study attributes come from
    `result.study`, and only UIDs are taken from the evidence. `predecessor` is the SR this one
    replaces (the study was scored again with other inputs): it is listed in the Predecessor
    Documents Sequence, so a PACS and a reader see the history instead of two unrelated reports.
    `comparison`: the follow-up against earlier studies (docs/method.md section 5); empty for a
    baseline, which still states its time point (TID 1502, type Baseline) so that later
    reports can read it. Each prior SR used is a COMPOSITE "Prior report for current patient"
    item and, being of another study, goes to Pertinent Other Evidence (never Predecessor
    Documents, which PACS treat as superseded). `identity`: sr_identity(result, comparison),
    when the caller derived it already (the page names the SR before it is built).
    """
    provenance = result.provenance
    algorithm = _algorithm(result)
    library = _library_images(evidence)
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(provenance),
        procedure_reported=codes.PROCEDURE_CT,
        imaging_measurements=[
            *(group for lesion in result.lesions for group in _lesion_groups(result, lesion, comparison, algorithm)),
            _patient_group(result, comparison.time_point, algorithm),
            *(response_groups(comparison.response,
                              lambda values: _measurements(algorithm, [_Value(*value) for value in values]),
                              lambda: _time_point_context(comparison.time_point))
              if comparison.response is not None else []),
        ],
        referenced_images=library or None,
    )
    _describe_acquisition(report[0], library)
    report[0].ContentSequence.extend(_prior_report_items(comparison.priors))
    report[0].ContentSequence.append(_reader_notes(result, [*codes.response_lines(comparison.response),
                                                            *comparison.notes]))
    identity = identity or sr_identity(result, comparison)
    sop_instance_uid = identity.sop_instance_uid
    return _ReportDocument(
        evidence=_evidence_headers(result.study, [*evidence, *map(_prior_header, comparison.priors)]),
        content=report[0],
        series_instance_uid=identity.series_instance_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=INSTANCE_NUMBER,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=provenance.algorithm_name,
        software_versions=provenance.algorithm_version,
        series_description=SERIES_DESCRIPTION,
        institution_name=institution,
        is_complete=True,
        is_final=True,
        coding_schemes=[_private_coding_scheme()],
        previous_versions=_predecessors(predecessor, sop_instance_uid),
        specific_character_set=SPECIFIC_CHARACTER_SET,
    )


# --- identity ------------------------------------------------------------------------------


def _predecessors(predecessor: Dataset | None, sop_instance_uid: str) -> list[Dataset] | None:
    """The replaced SR, unless it is this very document again (same inputs, same UID)."""
    if predecessor is None or predecessor.SOPInstanceUID == sop_instance_uid:
        return None
    return [predecessor]


@dataclass(frozen=True)
class SrIdentity:
    """The UIDs of the SR of one result and comparison (_sr_key says what makes one SR)."""

    series_instance_uid: str
    sop_instance_uid: str


def sr_identity(result: StudyResult, comparison: Comparison = Comparison()) -> SrIdentity:
    """The SR's UIDs, known before it is built: the page, which names the SR, is rendered
    meanwhile (service.outputs.built)."""
    key = _sr_key(result, comparison)
    return SrIdentity(derived_uid("sr-series", key), derived_uid("sr-instance", key))


def _sr_key(result: StudyResult, comparison: Comparison) -> list[str]:
    return _report_key(result, comparison.priors) + list(comparison.anchors)


def _report_key(result: StudyResult, priors: Sequence[PriorSrReference] = ()) -> list[str]:
    """What makes one SR: the study, the contour set and CT instances scored, and the exact
    algorithm, signature and settings (a CT slice arriving late changes the numbers, so it
    changes the SR).

    Re-sending the same study gives the same key (so the same UIDs); a new algorithm, signature
    or setting gives a new SR, which references the one it replaces, instead of silently
    replacing the old numbers under the same UID. The prior SRs compared with are part of it:
    another baseline (a prior re-scored, or one arriving late) gives other changes, so another
    SR. A study without priors keeps the key it always had.
    """
    provenance = result.provenance
    prior_uids = [f"prior:{prior.sop_instance_uid}" for prior in sorted(priors, key=lambda p: p.sop_instance_uid)]
    return [
        result.study.study_instance_uid,
        result.ct.contour_sop_instance_uid,
        *sorted(result.ct.sop_instance_uids),
        provenance.algorithm_name,
        provenance.algorithm_version,
        provenance.signature_id,
        provenance.signature_version,
        json.dumps(provenance.settings, sort_keys=True),
        *prior_uids,
    ]


def _prior_header(prior: PriorSrReference) -> Dataset:
    """A prior SR as evidence: its references only (_evidence_header adds the patient data)."""
    header = Dataset()
    header.SOPClassUID = prior.sop_class_uid
    header.SOPInstanceUID = prior.sop_instance_uid
    header.StudyInstanceUID = prior.study_instance_uid
    header.SeriesInstanceUID = prior.series_instance_uid
    return header


def _library_images(evidence: Sequence[Dataset]) -> list[Dataset]:
    """The CT images the image library (TID 1600) lists: per series, its first two and its last
    image along the slice normal.

    TID 1600 does not require an entry per image, and per-slice entries made the SR's build grow
    with the CT (300 entries of a dozen items each were nine tenths of the build). Three entries
    state the series' extent all the same: origin, slice spacing (the first gap) and count (span
    over spacing), as service.priors.library rebuilds it; every image stays in the evidence.

    highdicom describes each image by its top-level PixelSpacing, SliceThickness and position
    (TID 1604). SliceThickness is Type 2 in a CT (present, maybe empty), and an Enhanced CT keeps
    all three in functional groups: such images stay in the evidence but not in the library,
    rather than failing the study's report.
    """
    series: dict[str, list[Dataset]] = {}
    for dataset in evidence:
        if dataset.get("Modality") == "CT" and all(
                dataset.get(keyword) not in (None, "")
                for keyword in ("SliceThickness", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient")):
            series.setdefault(str(dataset.SeriesInstanceUID), []).append(dataset)
    listed: list[Dataset] = []
    for images in series.values():
        ordered = sorted(images, key=_along_normal)
        listed.extend(ordered[:2] + ordered[2:][-1:])
    return listed


def _along_normal(dataset: Dataset) -> float:
    """The image's position along its slice normal (row x column direction cosines)."""
    orientation = np.asarray(dataset.ImageOrientationPatient, dtype=float)
    return float(np.asarray(dataset.ImagePositionPatient, dtype=float) @ np.cross(orientation[:3], orientation[3:]))


def _describe_acquisition(content: Dataset, images: Sequence[Dataset]) -> None:
    """Add the CT's kVp and convolution kernel to its image library group (TID 1601 shared
    descriptors), from the first of the library's `images` (_library_images) that has each.

    A later study compares radiomics only between like acquisitions (docs/method.md 5.1) and
    knows this one only from its SR: slice thickness, positions and spacing are already in each
    entry's TID 1604 descriptors; kVp and kernel are not, so they are stated once per group.
    """
    library = [item for item in content.ContentSequence
               if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == _IMAGE_LIBRARY.value]
    if not images or not library:
        return
    kvp = next((ds.KVP for ds in images if ds.get("KVP") not in (None, "")), None)
    kernel = next((ds.ConvolutionKernel for ds in images if ds.get("ConvolutionKernel") not in (None, "")), None)
    context = hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT
    items: list[hd.sr.ContentItem] = []
    if kvp is not None:
        items.append(hd.sr.NumContentItem(name=codes.KVP, value=float(kvp), unit=codes.UNIT_KV,
                                          relationship_type=context))
    if kernel is not None:
        text = "\\".join(map(str, kernel)) if not isinstance(kernel, str) else kernel
        items.append(hd.sr.TextContentItem(name=codes.CONVOLUTION_KERNEL, value=text, relationship_type=context))
    for group in library[0].ContentSequence:
        position = sum(1 for item in group.ContentSequence if item.RelationshipType == context.value)
        for offset, item in enumerate(items):
            group.ContentSequence.insert(position + offset, item)


def _evidence_headers(study: StudyInfo, evidence: Sequence[Dataset]) -> list[Dataset]:
    """New minimal headers for highdicom: UIDs from the evidence, patient/study from `study`.

    Real headers break highdicom's attribute copying (an empty Specific Character Set, a
    17-character Study ID in an SH); copying only what SR evidence needs avoids both and never
    touches the caller's datasets. The first header is of the scored study, because the SR
    inherits its Study Instance UID from it.
    """
    if not evidence:
        raise InputError("no evidence instances were given for the SR")
    template = Dataset()
    template.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    set_patient_and_study(template, study)
    headers = [_evidence_header(template, dataset) for dataset in evidence]
    return sorted(headers, key=lambda h: h.StudyInstanceUID != study.study_instance_uid)


def _evidence_header(template: Dataset, dataset: Dataset) -> Dataset:
    """One evidence instance, reduced to its references, on `template`'s patient/study data
    (its elements shared, never changed: set once per report, not once per CT slice)."""
    missing = [k for k in _REFERENCE_KEYWORDS if not dataset.get(k)]
    if missing:
        raise InputError(f"evidence instance lacks {', '.join(missing)}")
    header = Dataset(dict(template.items()))  # its own mapping: Dataset(template) would share the template's
    for keyword in _REFERENCE_KEYWORDS:
        setattr(header, keyword, dataset.get(keyword))
    return header


# --- content -------------------------------------------------------------------------------


def _observation_context(provenance: Provenance) -> hd.sr.ObservationContext:
    """The algorithm as device observer: the SR states that software, not a person, measured."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid("device", [provenance.algorithm_name, provenance.algorithm_version]),
        name=provenance.algorithm_name,
        manufacturer_name=MANUFACTURER,
        model_name=provenance.algorithm_version,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
            observer_identifying_attributes=device,
        )
    )


def _algorithm(result: StudyResult) -> hd.sr.AlgorithmIdentification:
    """TID 4019: which algorithm, signature (with status) and cut-off made the measurements.

    Built once per report and given to every measurement: pydicom writes the shared items in
    each place (the document is the same as with one copy per measurement), and building one
    took 1-2 ms, 114 times for a 10-lesion study (a quarter of the SR's build).
    """
    provenance = result.provenance
    return hd.sr.AlgorithmIdentification(
        name=provenance.algorithm_name,
        version=provenance.algorithm_version,
        manufacturer=MANUFACTURER,
        parameters=[
            f"signature: {codes.signature_label(provenance)}",
            f"cut-off: {codes.cutoff_label(result.patient)}",
        ],
    )


def _measurements(algorithm: hd.sr.AlgorithmIdentification, values: Sequence[_Value]) -> list[hd.sr.Measurement]:
    """TID 300 measurements, each identifying the algorithm that made it (_algorithm)."""
    return [
        hd.sr.Measurement(
            name=v.name,
            value=v.value,
            unit=v.unit,
            derivation=v.derivation,
            method=v.method,
            algorithm_id=algorithm,
        )
        for v in values
    ]


def _finding_sites(location_classes: Sequence[str]) -> list[hd.sr.FindingSite]:
    """Finding sites for the location classes that name a body structure ("other" names none)."""
    sites = (codes.finding_site(location) for location in location_classes)
    return [hd.sr.FindingSite(site) for site in sites if site is not None]


def _lesion_finding_site(lesion: LesionResult) -> list[hd.sr.FindingSite]:
    """The lesion's finding site (codes.lesion_finding_site), when it has one."""
    site = codes.lesion_finding_site(lesion)
    return [hd.sr.FindingSite(site)] if site is not None else []


def _evaluations(pairs: Sequence[tuple[Code, Code]]) -> list[hd.sr.QualitativeEvaluation]:
    """Coded name-value statements of a group."""
    return [hd.sr.QualitativeEvaluation(name, value) for name, value in pairs]


def _lesion_groups(
    result: StudyResult, lesion: LesionResult, comparison: Comparison, algorithm: hd.sr.AlgorithmIdentification
) -> list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    """The lesion's TID 1411 groups: its core group, then its ring group when it has ring features.

    The region (core or ring) is the group's Measurement Method, because readers such as dcmqi's
    tid1500reader keep the method only per group: with both regions in one group, a feature
    measured in both read back as two indistinguishable values. Both groups carry the lesion's
    Tracking Identifier and UID (one lesion, two regions) and reference its contour (the ring is
    built around it); the core group, the contoured lesion itself, also holds the lesion-level
    values (sizes, score, change, statements, centroid). Each feature keeps its region as its
    own Measurement Method too, so that a reader merging the groups by Tracking UID, as
    service.priors.reading does, still tells the regions apart.
    """
    change = comparison.lesions.get(lesion.tracking_uid)
    core = _roi_group(result, lesion, comparison, "core",
                      measurements=_measurements(algorithm, _lesion_values(lesion) + _feature_values(lesion, "core")
                                                 + _change_values(change)),
                      qualitative_evaluations=_evaluations(_lesion_statements(result, lesion)
                                                           + _change_statements(change)
                                                           + _baseline_category(comparison, lesion)
                                                           + _not_new(comparison, lesion)))
    core[0].ContentSequence.append(_centroid(result, lesion))
    core[0].ContentSequence.extend(_not_computable_items(lesion))
    if change is not None:
        core[0].ContentSequence.extend(_match_items(change))
        core[0].ContentSequence.extend(_lineage(change))
    groups = [core]
    ring_values = _feature_values(lesion, "ring")
    if ring_values:
        groups.append(_roi_group(result, lesion, comparison, "ring", measurements=_measurements(algorithm, ring_values)))
    deltas = change.feature_deltas if change is not None else ()
    for group, region in zip(groups, ("core", "ring")):
        if own := [delta for delta in deltas if delta.region == region]:
            group[0].ContentSequence.append(_feature_deltas(own, change.cd8_not_comparable if change else ()))
    return groups


def _roi_group(
    result: StudyResult, lesion: LesionResult, comparison: Comparison, region: str, **content: Any
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """One TID 1411 group of the lesion for `region` (its Measurement Method), referencing the
    lesion's contour the way its source allows; `content`: its measurements and evaluations."""
    group: dict[str, Any] = {
        "tracking_identifier": hd.sr.TrackingIdentifier(
            uid=lesion.tracking_uid, identifier=lesion.tracking_id
        ),
        "time_point_context": _time_point_context(comparison.time_point),
        "finding_type": codes.FINDING_LESION,
        "method": REGION_METHODS[region],
        "finding_sites": _lesion_finding_site(lesion),
        **content,
    }
    roi_reference: Sequence[Dataset]
    if lesion.source == LesionSource.SEG:
        roi_reference = hd.sr.ReferencedSegment(
            sop_class_uid=result.ct.contour_sop_class_uid,
            sop_instance_uid=lesion.source_sop_instance_uid,
            segment_number=lesion.number,
            source_series=hd.sr.SourceSeriesForSegmentation(result.ct.series_instance_uid),
        )
    else:
        roi_reference = _region_in_space(result, lesion)
    built = _RoiGroup(roi_reference, **group)
    method_as_concept_modifier(built)
    return built


def _region_in_space(result: StudyResult, lesion: LesionResult) -> list[hd.sr.ContentItem]:
    """The RT Structure Set (TID 1411 row 12b), then which of its ROIs by ROI Number: the
    lesion's number, as the RTSTRUCT reader took it from Structure Set ROI Sequence."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    return [
        hd.sr.CompositeContentItem(
            name=_REGION_IN_SPACE,
            referenced_sop_class_uid=result.ct.contour_sop_class_uid,
            referenced_sop_instance_uid=lesion.source_sop_instance_uid,
            relationship_type=contains,
        ),
        hd.sr.TextContentItem(name=_ROI_IDENTIFIER, value=str(lesion.number), relationship_type=contains),
    ]


def _lineage(change: LesionComparison) -> list[hd.sr.UIDRefContentItem]:
    """The tracking UIDs a lesion descends from (docs/method.md 5.1): a split fragment names the
    lesion it came from, a merged lesion each lesion merged into it."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    parent = [] if change.derived_from_uid is None else [(codes.DERIVED_FROM_TRACKING_UID, change.derived_from_uid)]
    return [hd.sr.UIDRefContentItem(name=name, value=uid, relationship_type=contains)
            for name, uid in [*parent, *((codes.MERGED_TRACKING_UID, uid) for uid in change.merged_uids)]]


def _feature_deltas(deltas: Sequence[FeatureDelta], not_comparable: Sequence[str]) -> hd.sr.ContainerContentItem:
    """LESCHG container of one region's group: per feature of `deltas`, the delta (in the
    feature's unit) and the relative delta (%), each a TID 300 NUM coded like the feature (name,
    derivation, region as method), so a reader pairs them with the feature by the same codes.
    Not comparable: stated inside, with the reasons. A delta without a value (feature missing in
    one study) has no NUM."""
    container = hd.sr.ContainerContentItem(name=codes.FEATURE_DELTAS,
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    items: list[Dataset] = []
    if not_comparable:
        items.append(hd.sr.TextContentItem(name=codes.NOT_COMPARABLE, value="; ".join(not_comparable),
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    for delta in deltas:
        concept = feature_concept(delta.tag)
        if concept is None:
            continue
        for metric, unit in ((delta.delta, concept.unit), (delta.relative_percent, codes.UNIT_PERCENT)):
            if metric.value is not None and math.isfinite(metric.value):
                items.append(hd.sr.Measurement(name=concept.name, value=metric.value, unit=unit,
                                               derivation=concept.derivation, method=REGION_METHODS[delta.region])[0])
    container.ContentSequence = hd.sr.ContentSequence(items)  # type: ignore[arg-type]  # Measurement[0] is a NUM item
    return container


def _time_point_context(time_point: TimePointInfo) -> hd.sr.TimePointContext:
    """TID 1502: which of the patient's studies this is, in every group (docs/method.md section 5)."""
    offset = None
    if time_point.days_since_baseline is not None:
        offset = hd.sr.LongitudinalTemporalOffsetFromEvent(
            value=time_point.days_since_baseline, unit=codes.UNIT_DAY, event_type=codes.EVENT_BASELINE)
    return hd.sr.TimePointContext(
        time_point=time_point.label,
        time_point_type=codes.TIME_POINT_BASELINE if time_point.is_baseline else codes.TIME_POINT_POSTTREATMENT,
        time_point_order=time_point.order,
        subject_time_point_identifier=time_point.identifier,
        temporal_offset_from_event=offset,
    )


def _change_values(change: LesionComparison | None) -> list[_Value]:
    """The change NUMs of docs/method.md 5.1 (99RCDS codes, service.outputs.codes); a relative change whose
    reference is 0 has no NUM, never 0 in its place."""
    if change is None:
        return []
    values = []
    for name, metric, unit in (
        (codes.LD_MM_BASELINE, change.diameter_delta_mm_baseline, codes.UNIT_MM),
        (codes.LD_PCT_BASELINE, change.diameter_pct_baseline, codes.UNIT_PERCENT),
        (codes.LD_PCT_PREVIOUS, change.diameter_pct_previous, codes.UNIT_PERCENT),
        (codes.VOLUME_PCT_BASELINE, change.volume_pct_baseline, codes.UNIT_PERCENT),
        (codes.CD8_SCORE_DELTA, change.cd8_delta, codes.UNIT_SCORE),
        (codes.MATCH_DISTANCE, Metric(change.match_distance_mm), codes.UNIT_MM),
    ):
        if metric.value is not None:
            values.append(_Value(name, metric.value, unit))
    return values


def _baseline_category(comparison: Comparison, lesion: LesionResult) -> list[tuple[Code, Code]]:
    """Baseline Category (CID 6145) as chosen at the baseline: how "once target, always target"
    reaches every later report (docs/method.md 5.3)."""
    category = comparison.baseline_categories.get(lesion.tracking_uid)
    if category is None:
        return []
    return [(codes.BASELINE_CATEGORY, codes.lookup(codes.BASELINE_CATEGORIES, category, "baseline category"))]


def _not_new(comparison: Comparison, lesion: LesionResult) -> list[tuple[Code, Code]]:
    """Not evaluable as new: first seen outside the scan before's coverage (docs/method.md 5.1)."""
    return [(codes.NOT_EVALUABLE_AS_NEW, codes.YES)] if lesion.tracking_uid in comparison.not_new else []


def _change_statements(change: LesionComparison | None) -> list[tuple[Code, Code]]:
    """The lesion-wise category (Sun 2022), when the change is evaluable."""
    if change is None or change.category not in codes.LESION_CATEGORIES:
        return []
    return [(codes.LESION_RESPONSE, codes.LESION_CATEGORIES[change.category])]


def _match_items(change: LesionComparison) -> list[hd.sr.TextContentItem]:
    """How the lesion was matched, why its score delta may not be trusted, and that its
    lesion-wise response needs confirmation, as TEXT: the values (docs/method.md 5.1) have no
    codes of their own."""
    lines = [(codes.MATCH_METHOD, change.match_method)]
    if change.match_confidence is not None:
        lines.append((codes.MATCH_CONFIDENCE, change.match_confidence))
    if change.cd8_not_comparable:
        lines.append((codes.NOT_COMPARABLE, "; ".join(change.cd8_not_comparable)))
    if _change_statements(change):
        lines.append((codes.COMMENT, codes.LESION_RESPONSE_CAVEAT))
    lines += [(codes.COMMENT, f"Lesion-wise flag: {flag}") for flag in change.flags]
    return [hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
            for name, value in lines]


def _prior_report_items(priors: Sequence[PriorSrReference]) -> list[hd.sr.CompositeContentItem]:
    """One (122075, DCM) "Prior report for current patient" item per prior SR compared with."""
    return [hd.sr.CompositeContentItem(name=codes.PRIOR_REPORT, referenced_sop_class_uid=prior.sop_class_uid,
                                       referenced_sop_instance_uid=prior.sop_instance_uid,
                                       relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
            for prior in priors]


def _centroid(result: StudyResult, lesion: LesionResult) -> hd.sr.Scoord3DContentItem:
    """The lesion's centroid as a SCOORD3D point in the CT's Frame of Reference.

    A radiotherapy planning system reads its targets from these points (the least-infiltrated
    lesion for ablative SBRT, the highest-score lesion for low-dose RT). TID 1411 is extensible;
    the point is a child of the lesion's group, named DCM 128138 "Center of Mass".
    """
    return hd.sr.Scoord3DContentItem(
        name=codes.CENTER_OF_MASS,
        graphic_type=hd.sr.GraphicTypeValues3D.POINT,
        graphic_data=np.asarray([lesion.centroid_mm], dtype=float),
        frame_of_reference_uid=result.ct.frame_of_reference_uid,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _lesion_values(lesion: LesionResult) -> list[_Value]:
    """Size measurements always; the score only when it exists (never 0 or NaN in its place)."""
    values = [
        _Value(codes.VOLUME, lesion.volume_ml, codes.UNIT_ML),
        _Value(codes.LONG_AXIS, lesion.longest_axial_diameter_mm, codes.UNIT_MM),
        _Value(codes.SHORT_AXIS, lesion.short_axis_mm, codes.UNIT_MM),
        _Value(codes.MAX_3D_DIAMETER, lesion.max_3d_diameter_mm, codes.UNIT_MM),
    ]
    if lesion.score is not None:
        values.append(_Value(codes.CD8_SCORE, lesion.score, codes.UNIT_SCORE))
    return values


def _feature_values(lesion: LesionResult, region: str) -> list[_Value]:
    """The lesion's IBSI-defined radiomics features of `region`, coded, with the region as the method."""
    values = []
    for tag, value in sorted(lesion.features.get(region, {}).items()):
        concept = feature_concept(tag)
        if concept is not None and math.isfinite(value):
            values.append(_Value(concept.name, value, concept.unit, concept.derivation, REGION_METHODS[region]))
    return values


def _not_computable_items(lesion: LesionResult) -> list[hd.sr.TextContentItem]:
    """A Comment naming the features without a value (NaN: e.g. the kurtosis of a constant
    region), per region, each with its reason: left out of the measurements (never NaN in
    their place), they would otherwise vanish without a word (the Bundle's notes say the same)."""
    parts = [f"{region}: {undefined}" for region in REGION_METHODS
             if (undefined := undefined_features_text(lesion.features.get(region, {})))]
    if not parts:
        return []
    return [hd.sr.TextContentItem(name=codes.COMMENT, value=f"Not computable, {'; '.join(parts)}.",
                                  relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)]


def _lesion_statements(result: StudyResult, lesion: LesionResult) -> list[tuple[Code, Code]]:
    """Where the location came from, the score class or why there is no score, candidacies."""
    statements = [
        (
            codes.LOCATION_SOURCE,
            codes.lookup(codes.LOCATION_SOURCES, lesion.location_source, "location source"),
        )
    ]
    if lesion.score is None:
        statements.append((codes.CD8_SCORE, codes.SCORE_NOT_COMPUTED))
    if lesion.score_class is not None:
        score_class = codes.lookup(codes.SCORE_CLASSES, lesion.score_class, "score class")
        statements.append((codes.CD8_SCORE_CLASS, score_class))
    statements += [
        (codes.RT_TARGET_CANDIDATE, candidacy)
        for candidacy in codes.candidate_codes(result.patient, lesion)
    ]
    return statements


def _patient_group(result: StudyResult, time_point: TimePointInfo,
                   algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 for the patient-level biomarkers of docs/method.md section 4."""
    patient = result.patient
    tracking_uid = derived_uid(
        "patient-group", [result.study.study_instance_uid, result.ct.contour_sop_instance_uid]
    )
    risk_group = codes.lookup(codes.RISK_GROUPS, patient.risk_group, "risk group")
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid, identifier=PATIENT_GROUP_IDENTIFIER
        ),
        time_point_context=_time_point_context(time_point),
        finding_sites=_finding_sites(patient.organs_involved),
        measurements=_measurements(algorithm, _patient_values(result)),
        qualitative_evaluations=_evaluations([(codes.RISK_GROUP, risk_group)]),
    )


def _patient_values(result: StudyResult) -> list[_Value]:
    """Counts, volumes, the cut-off, and every score statistic that has a value."""
    patient = result.patient
    values = [
        _Value(codes.N_LESIONS, patient.n_lesions, codes.UNIT_LESIONS),
        _Value(codes.N_COMPUTABLE, patient.n_computable, codes.UNIT_LESIONS),
        _Value(codes.N_OVER_VOLUME_FILTER, patient.n_over_volume_filter, codes.UNIT_LESIONS),
        _Value(codes.VOLUME_FILTER, patient.volume_filter_ml, codes.UNIT_ML),
        _Value(codes.VOLUME, patient.total_volume_ml, codes.UNIT_ML, codes.TOTAL),
        _Value(codes.N_ORGANS, len(patient.organs_involved), codes.UNIT_ORGANS),
        _Value(codes.CUTOFF, patient.cutoff_value, codes.UNIT_SCORE),
    ]
    for key, metric in patient.score_stats.items():
        derivation, _ = codes.lookup(codes.SCORE_STATISTICS, key, "score statistic")
        if metric.value is not None:
            values.append(_Value(codes.CD8_SCORE, metric.value, codes.UNIT_SCORE, derivation))
    return values


def _reader_notes(result: StudyResult, comparison_notes: Sequence[str] = ()) -> hd.sr.ContainerContentItem:
    """TID 1500 "Qualitative Evaluations": the summary, what the comparison with earlier
    studies noted, and provenance, as TEXT comments."""
    lines = codes.summary_lines(result) + list(comparison_notes) + codes.provenance_lines(result.provenance)
    container = hd.sr.ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=codes.COMMENT,
                value=line,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
            for line in lines
        ]
    )
    return container


def _private_coding_scheme() -> CodingSchemeIdentificationItem:
    """Declares 99RCDS in the SR, as PS3.3 requires for a private coding scheme designator."""
    return CodingSchemeIdentificationItem(
        designator=codes.RCDS_SCHEME,
        name=codes.RCDS_SCHEME_NAME,
        version=codes.RCDS_SCHEME_VERSION,
        responsible_organization=codes.RCDS_RESPONSIBLE_ORGANIZATION,
        resources=[CodingSchemeResourceItem(codes.RCDS_FHIR_SYSTEM, "DOC")],
    )
