"""The follow-up of a scored study against its prior SRs (docs/method.md 5.1).

Wires the pure longitudinal core to what the pipeline has: the current StudyResult and CT, and
the prior SRs read back as PriorReports (oldest first; the latest is the previous time point,
the baseline the one service.response.choose_baseline picks: treatment_start,
baseline_study_uid, else the oldest; a study that is itself the baseline is T0 and changes
against it are not computable). The current lesions are matched against the previous time point,
because identities are carried forward from report to report: a lesion matched at T1 already
carries its baseline UID, so the baseline measurement of a lesion is found by that UID. Only a
lesion left unlinked there is matched again, against the lesions of earlier reports the
previous one lost (_found_again).

The result keeps the numbers for a reader (links, changes, identities) and the plain
`Comparison` the outputs encode, and the StudyResult re-issued under the carried identities, so
the SR and the Bundle name a lesion the same way in every study.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from service.comparison import Comparison, FeatureDelta, LesionComparison, PriorSrReference, TimePointInfo
from service.longitudinal.change import LesionCategory, LesionChange, Size, group_size, lesion_change
from service.longitudinal.deltas import ValueDelta, comparability, radiomic_deltas
from service.longitudinal.identity import CarriedIdentity, carried_identities, fragment_uid
from service.longitudinal.links import Link, LinkStatus
from service.longitudinal.matching import link_order, match_lesions
from service.location import organ_key
from service.longitudinal.timepoint import Acquisition, ExtractionContext, TimePoint, TimepointLesion, UidSource
from service.model import CtSeries, ImageGeometry, LesionResult, Metric, StudyResult
from service.outputs import codes
from service.outputs.feature_codes import REGION_METHODS, feature_concept
from service.prior_frames import FrameSources, prior_mapping
from service.priors.reading import CarriedSums, PriorLesion, PriorReport, feature_key
from service.priors.selection import COMPREHENSIVE_3D_SR, study_moment
from service.response import ResponseInputs, StudyLesions, assess_response, choose_baseline, dicom_date

_SETTINGS_LINE = "Settings: "
_SIGNATURE_LINE = "Signature: "
_SITE_CLASSES = {site.meaning: location for location, site in codes.FINDING_SITES.items()}


AT_BASELINE = "this study is the baseline (treatment_start or baseline_study_uid): no change against it"
_NONE_AT_BASELINE = Metric.not_computable(AT_BASELINE)

@dataclass(frozen=True)
class FollowUp:
    """What the comparison with the priors found, and the study re-issued under carried identities."""

    result: StudyResult
    comparison: Comparison
    links: tuple[Link, ...] = ()
    changes: Mapping[str, LesionChange] = dataclasses.field(default_factory=dict)  # by carried tracking UID
    identities: Mapping[str, CarriedIdentity] = dataclasses.field(default_factory=dict)  # own UID -> carried


def acquisition(ct: CtSeries, evidence: Sequence[Dataset]) -> Acquisition:
    """kVp, kernel and slice thickness of the scored CT series (the first of its headers that
    has each), which decide whether radiomic deltas are comparable (docs/method.md 5.1)."""
    headers = [ds for ds in evidence if str(ds.get("SeriesInstanceUID", "")) == ct.series_instance_uid]

    def first(keyword: str) -> object:
        return next((ds.get(keyword) for ds in headers if ds.get(keyword) not in (None, "")), None)

    kernel, thickness = first("ConvolutionKernel"), first("SliceThickness")
    if isinstance(kernel, MultiValue):
        kernel = "\\".join(str(part) for part in kernel)
    return Acquisition(ct.kvp, None if kernel is None else str(kernel),
                       None if thickness is None else float(str(thickness)))


def follow_up(result: StudyResult, extent: ImageGeometry | None, current_acquisition: Acquisition,
              priors: Sequence[PriorReport], notes: Sequence[str] = (),
              frames: FrameSources = FrameSources(), inputs: ResponseInputs = ResponseInputs()) -> FollowUp:
    """Compare a scored study with its prior SRs; without priors, a baseline report (which
    still chooses the targets). `frames` relate the previous time point's Frame of Reference to
    the current one when they differ; `inputs` are the response's time anchors and rule settings
    (those not at their defaults are stated in the notes)."""
    ordered = sorted(priors, key=lambda p: (study_moment(p.study_date, p.study_time), p.study_instance_uid))
    current = TimePoint(result.study.study_instance_uid, result.ct.frame_of_reference_uid, extent,
                        tuple(_current_lesion(lesion) for lesion in result.lesions),
                        _current_context(result, current_acquisition))
    current_study = StudyLesions(current.study_instance_uid, dicom_date(result.study.study_date),
                                 result.study.study_date, current.lesions, current_acquisition.slice_thickness_mm,
                                 {}, {}, organs={lesion.tracking_uid: organ for lesion in result.lesions
                                                 if (organ := organ_key(lesion.location_class,
                                                                        lesion.anatomic_region)) is not None})
    if not ordered:
        own = assess_response(current_study, (), (), {}, {}, inputs)
        return FollowUp(result, Comparison(notes=(*notes, *own.notes, *inputs.notes()),
                                           baseline_categories=own.categories,
                                           anchors=tuple(inputs.key())))
    tags = _feature_tags(result)
    previous_report = ordered[-1]
    previous = _prior_timepoint(previous_report, tags)
    all_notes = list(notes)
    mapping, frame_note = prior_mapping(frames, current.frame_of_reference_uid, previous_report)
    all_notes.extend(filter(None, [frame_note]))
    prior_studies = [_study_lesions(report) for report in ordered]
    # Lesion changes and the time point count from the baseline the response rules choose
    # (treatment_start, baseline_study_uid, else the earliest report), not the earliest report.
    base = choose_baseline([*prior_studies, current_study], inputs)[0]
    since_baseline = ordered[base:]  # empty: this study is the baseline
    found = _found_again(match_lesions(current, previous, mapping), current, since_baseline[:-1], previous_report,
                         frames, tags)
    links = found.links
    all_notes += found.notes
    first_sizes = _first_sizes(since_baseline)
    last_seen = {lesion.tracking_uid: (previous_report, lesion) for lesion in previous_report.lesions}
    last_seen.update(found.last_seen)
    linked = {uid: lesion for uid, (_, lesion) in last_seen.items()}  # the prior lesions, as last stated
    identities = _with_lineage(
        carried_identities(links, {uid: size.diameter_mm for uid, (_, size) in first_sizes.items()},
                           {uid: lesion.baseline_category for uid, lesion in linked.items()
                            if lesion.baseline_category is not None}),
        links, linked)
    comparable = comparability(current.context, previous.context)
    changes: dict[str, LesionChange] = {}
    lesions: dict[str, LesionComparison] = {}
    for link in links:
        if link.status not in (LinkStatus.MATCHED, LinkStatus.SPLIT, LinkStatus.MERGED):
            all_notes.append(_link_note(link))
            continue
        # the report that last held the prior lesion: the previous one, or an earlier one for a lesion found again
        seen_in = last_seen.get(link.prior[0].tracking_uid, (previous_report, None))[0]
        if since_baseline:
            baselines = [*_baselines(link.prior, first_sizes, seen_in.study_instance_uid),
                         *_merged_baselines(link, identities, first_sizes)]
            baseline = Size(sum(size.diameter_mm for _, size in baselines),
                            sum(size.volume_ml for _, size in baselines))
            change = lesion_change(group_size(link.current), baseline, group_size(link.prior))
        else:
            baselines, change = [], _at_baseline(group_size(link.current), group_size(link.prior))
        studies = tuple(dict.fromkeys([*(study for study, _ in baselines), seen_in.study_instance_uid]))
        comparison = LesionComparison(
            match_method=link.method.value,
            match_confidence=link.confidence.value if link.confidence else None,
            match_distance_mm=link.distance_mm,
            diameter_delta_mm_baseline=Metric(change.versus_baseline.delta_mm) if since_baseline else _NONE_AT_BASELINE,
            diameter_pct_baseline=change.versus_baseline.percent,
            diameter_pct_previous=change.versus_previous.percent,
            volume_pct_baseline=change.versus_baseline.volume_percent,
            cd8_delta=Metric.not_computable(f"{link.status.value}: no single prior lesion to compare with"),
            cd8_not_comparable=comparable.reasons,
            category=change.category.value,
            size_sources=studies,
            flags=change.flags,
        )
        from_previous = seen_in is previous_report
        if not from_previous:
            # "versus the previous time point" (LDPCTPREV, CD8RSDELTA, the feature deltas): a
            # lesion found again has none
            missing = Metric.not_computable(f"not in the previous report (last reported on "
                                            f"{seen_in.study_date or 'an unknown date'})")
            comparison = dataclasses.replace(comparison, diameter_pct_previous=missing, cd8_delta=missing)
        if link.status is LinkStatus.MATCHED:
            (now,), (then,) = link.current, link.prior
            changes[then.tracking_uid] = change
            if from_previous:
                score, *features = radiomic_deltas(now, then, comparable)
                comparison = dataclasses.replace(comparison, cd8_delta=score.delta,
                                                 feature_deltas=tuple(_feature_delta(delta) for delta in features))
            lesions[then.tracking_uid] = dataclasses.replace(
                comparison, derived_from_uid=identities[now.tracking_uid].derived_from_uid,
                merged_uids=identities[now.tracking_uid].absorbed_uids)
            continue
        for now in link.current:
            identity = identities[now.tracking_uid]
            changes[identity.tracking_uid] = change
            lesions[identity.tracking_uid] = dataclasses.replace(
                comparison, derived_from_uid=identity.derived_from_uid, merged_uids=identity.absorbed_uids,
                prior_uids=tuple(p.tracking_uid for p in link.prior))
        all_notes += _merge_notes(link, identities)
    not_new = _not_evaluable_as_new(links, identities, linked)
    current_study = dataclasses.replace(current_study, not_new=not_new)
    response = assess_response(current_study, prior_studies, links, identities,
                               {uid: change.versus_baseline.percent.value for uid, change in changes.items()
                                if change.versus_baseline.percent.value is not None}, inputs)
    return FollowUp(_carried(result, identities), Comparison(
        time_point=TimePointInfo(len(since_baseline) + 1, _days(since_baseline[0].study_date, result.study.study_date))
        if since_baseline else TimePointInfo(),
        priors=tuple(_reference(report) for report in ordered),
        lesions=lesions,
        notes=(*all_notes, *response.notes, *inputs.notes()),
        baseline_categories=response.categories,
        response=response.assessment,
        series=response.series,
        anchors=tuple(inputs.key()),
        not_new=tuple(sorted(not_new)),
    ), links, changes, identities)


def _at_baseline(current: Size, previous: Size) -> LesionChange:
    """The change of a lesion of a study that is itself the baseline: against the previous
    study as usual, against the baseline none (not computable), and so no lesion-wise category."""
    change = lesion_change(current, current, previous)
    return dataclasses.replace(
        change, category=LesionCategory.NOT_EVALUABLE, category_reason=AT_BASELINE,
        versus_baseline=dataclasses.replace(change.versus_baseline, percent=_NONE_AT_BASELINE,
                                            volume_percent=_NONE_AT_BASELINE))


def _study_lesions(report: PriorReport) -> StudyLesions:
    """A prior SR as the response rules see it: its lesions, the Baseline Categories, split
    fragments' parents, the iRECIST state and the baseline and nadir sums it states."""
    sums = report.sums or CarriedSums(None, None, None)
    return StudyLesions(
        report.study_instance_uid, dicom_date(report.study_date), report.study_date,
        tuple(lesion for lesion in map(_prior_lesion, report.lesions) if lesion is not None),
        report.ct.slice_thickness_mm,
        {x.tracking_uid: x.baseline_category for x in report.lesions if x.baseline_category is not None},
        {x.tracking_uid: x.derived_from_uid for x in report.lesions if x.derived_from_uid is not None},
        report.irecist_state, sums.baseline_sod_mm, sums.nadir_sod_mm, sums.assessment_uid,
        {uid: x.tracking_uid for x in report.lesions for uid in x.merged_uids},
        not_new=frozenset(uid for x in report.lesions if x.not_evaluable_as_new
                          for uid in (x.tracking_uid, *filter(None, [x.derived_from_uid]))))


def _feature_delta(delta: ValueDelta) -> FeatureDelta:
    """radiomic_deltas names a feature "<region>/<tag>"."""
    region, tag = delta.name.split("/", 1)
    return FeatureDelta(region, tag, delta.delta, delta.relative_percent)


def _with_lineage(identities: Mapping[str, CarriedIdentity], links: Sequence[Link],
                  previous: Mapping[str, PriorLesion]) -> dict[str, CarriedIdentity]:
    """The identities, each followed lesion also holding what the previous report says it
    descends from, so that this report says it again (docs/method.md 5.1):
    - the lesions merged into it at earlier studies stay 0 mm (RECIST 1.1, coalesced lesions);
      otherwise the report before this one would be the last to name them, and the next would
      find a target missing (NE). After a split they go with its largest fragment; one the
      previous report holds as a lesion of its own again is merged no longer;
    - a split fragment followed one to one keeps naming its parent, so that RECIST still sums
      the fragments under it; otherwise each would be a new lesion from the next study on.
    `previous`: the prior lesions linked to, as the report that last held each states them (the
    previous report, or an earlier one for a lesion found again: _found_again).
    """
    out = dict(identities)
    for link in links:
        if link.status not in (LinkStatus.MATCHED, LinkStatus.SPLIT, LinkStatus.MERGED):
            continue
        earlier = [uid for prior in link.prior if prior.tracking_uid in previous
                   for uid in previous[prior.tracking_uid].merged_uids if uid not in previous]
        if link.status is LinkStatus.SPLIT:
            largest = fragment_uid(link.prior[0].tracking_uid, 1)
            heir = next(c.tracking_uid for c in link.current if out[c.tracking_uid].tracking_uid == largest)
        else:
            heir = link.current[0].tracking_uid
        identity = out[heir]
        parent = identity.derived_from_uid
        if link.status is LinkStatus.MATCHED and link.prior[0].tracking_uid in previous:
            parent = previous[link.prior[0].tracking_uid].derived_from_uid
        out[heir] = dataclasses.replace(identity, derived_from_uid=parent, absorbed_uids=tuple(dict.fromkeys(
            [*identity.absorbed_uids, *earlier])))
    return out


@dataclass(frozen=True)
class FoundAgain:
    """The links after _found_again, and each prior lesion found again: tracking UID -> (the
    earlier report that last held it, the lesion as that report states it)."""

    links: tuple[Link, ...]
    last_seen: Mapping[str, tuple[PriorReport, PriorLesion]]
    notes: tuple[str, ...]


def _found_again(links: Sequence[Link], current: TimePoint, earlier: Sequence[PriorReport],
                 previous_report: PriorReport, frames: FrameSources,
                 tags: Mapping[str, tuple[str, str]]) -> FoundAgain:
    """The current lesions the previous report left unlinked (new, or not evaluable as new)
    matched again, by the same cascade, against the lesions of the `earlier` reports since the
    baseline that the previous report does not hold, the newest report first (docs/method.md 5.1).

    A lesion not contoured at one follow-up (missed, or outside that scan) is not in its report:
    matched with the previous report alone, its return would be a new lesion, RECIST
    progression that is not there (EORTC RECIST FAQ: a lesion that disappears and reappears is
    not new). A one-to-one match, or a split of the lost lesion into waiting lesions, replaces
    their unlinked links. The earlier report's Frame of Reference is mapped as the previous
    one's is (prior_mapping), only when there is something to match, and without retrieving
    and registering its CT: lost lesions stay candidates at every later study, and a new lesion
    must not cost a CT retrieval per earlier report. Without a mapping, the cascade matches by
    tracking UID and name only; its note then goes with the lesion's.
    """
    held = _held(previous_report)
    last_seen: dict[str, tuple[PriorReport, PriorLesion]] = {}
    notes: list[str] = []
    out = tuple(links)
    for report in reversed(earlier):
        waiting = [link.current[0] for link in out if not link.prior and len(link.current) == 1]
        timepoint = _prior_timepoint(report, tags)
        lost = tuple(lesion for lesion in timepoint.lesions if lesion.tracking_uid not in held)
        held |= _held(report)
        if not waiting or not lost:
            continue
        mapping, frame_note = prior_mapping(dataclasses.replace(frames, prior_ct=None),
                                            current.frame_of_reference_uid, report)
        matched = [link for link in match_lesions(dataclasses.replace(current, lesions=tuple(waiting)),
                                                  dataclasses.replace(timepoint, lesions=lost), mapping)
                   if link.status in (LinkStatus.MATCHED, LinkStatus.SPLIT)]
        again = {c.tracking_uid for link in matched for c in link.current}
        out = tuple(sorted([*(link for link in out if link.prior or link.current[0].tracking_uid not in again),
                            *matched], key=link_order))
        stated = {lesion.tracking_uid: lesion for lesion in report.lesions}
        for link in matched:
            (then,) = link.prior
            last_seen[then.tracking_uid] = (report, stated[then.tracking_uid])
            how = link.method.value.replace("_", " ") + (f", split in {len(link.current)}" if len(link.current) > 1
                                                          else "")
            notes.append(f"lesion {', '.join(c.tracking_id for c in link.current)}: found again ({how}): prior "
                         f"lesion {then.tracking_id}, last reported on {report.study_date or 'an unknown date'} and "
                         "not in the previous report; not a new lesion" + (f" ({frame_note})" if frame_note else ""))
    return FoundAgain(out, last_seen, tuple(notes))


def _not_evaluable_as_new(links: Sequence[Link], identities: Mapping[str, CarriedIdentity],
                          prior: Mapping[str, PriorLesion]) -> frozenset[str]:
    """The carried UIDs of the current lesions not evaluable as new (docs/method.md 5.1): those
    first seen now outside the scan before's coverage (or with no way to tell), and those that
    follow a prior lesion its report says so of (a split one: its fragments and itself), so that
    RECIST never counts them new, now or at a later study (followup.md 9.9: lesions outside the
    coverage are never "new"). `prior`: the prior lesions linked to, as their reports state them."""
    out: set[str] = set()
    for link in links:
        if link.status is LinkStatus.NOT_EVALUABLE and not link.prior:
            out.update(identities[c.tracking_uid].tracking_uid for c in link.current)
        elif link.status in (LinkStatus.MATCHED, LinkStatus.SPLIT) and any(
                p.tracking_uid in prior and prior[p.tracking_uid].not_evaluable_as_new for p in link.prior):
            out.update(identities[c.tracking_uid].tracking_uid for c in link.current)
            out.update(p.tracking_uid for p in link.prior if link.status is LinkStatus.SPLIT)
    return frozenset(out)


def _held(report: PriorReport) -> set[str]:
    """The tracking UIDs a report accounts for: its lesions, the lesions merged into them and
    the parents of its split fragments."""
    return {uid for lesion in report.lesions
            for uid in (lesion.tracking_uid, *lesion.merged_uids, *filter(None, [lesion.derived_from_uid]))}


def _merge_notes(link: Link, identities: Mapping[str, CarriedIdentity]) -> list[str]:
    """The prior lesions a merge absorbed: merged into the lesion that kept its UID, now 0 mm."""
    kept = identities[link.current[0].tracking_uid]
    return [f"prior lesion {p.tracking_id}: merged into {kept.tracking_id} (0 mm)"
            for p in link.prior if p.tracking_uid in kept.absorbed_uids]


def _size(lesion: TimepointLesion) -> Size:
    return Size(lesion.diameter_mm, lesion.volume_ml)


def _baselines(prior: Sequence[TimepointLesion], first_sizes: Mapping[str, tuple[str, Size]],
               previous_study: str) -> list[tuple[str, Size]]:
    """(study, size) of each prior lesion at its first appearance: its baseline; a lesion the
    reports never showed before the previous one has that one as its baseline."""
    return [first_sizes.get(lesion.tracking_uid, (previous_study, _size(lesion))) for lesion in prior]


def _merged_baselines(link: Link, identities: Mapping[str, CarriedIdentity],
                      first_sizes: Mapping[str, tuple[str, Size]]) -> list[tuple[str, Size]]:
    """(study, size) at their first appearance of the lesions merged into this link's lesion at
    earlier studies: a merged lesion is compared with the sum of its sources (docs/method.md
    5.1) at every later study too, not with its own baseline alone."""
    own = {prior.tracking_uid for prior in link.prior}
    return [first_sizes[uid] for current in link.current for uid in identities[current.tracking_uid].absorbed_uids
            if uid not in own and uid in first_sizes]


def _current_lesion(lesion: LesionResult) -> TimepointLesion:
    return TimepointLesion(lesion.tracking_uid, lesion.tracking_id, UidSource.DERIVED, lesion.name, lesion.number,
                           lesion.location_class.value, lesion.centroid_mm, lesion.longest_axial_diameter_mm,
                           lesion.short_axis_mm, lesion.volume_ml, lesion.score, lesion.features)


def _feature_tags(result: StudyResult) -> dict[str, tuple[str, str]]:
    """feature_key (the codes a prior SR names a feature by) -> (region, tag) of the current
    study's features, so both sides of a delta are keyed the same way."""
    tags = {}
    for lesion in result.lesions:
        for region, features in lesion.features.items():
            for tag in features:
                if (concept := feature_concept(tag)) is not None:
                    tags[feature_key(concept.name, concept.derivation, REGION_METHODS[region])] = (region, tag)
    return tags


def _prior_lesion(lesion: PriorLesion, tags: Mapping[str, tuple[str, str]] | None = None) -> TimepointLesion | None:
    """None when the SR lacks what matching needs (our SRs always have it). `tags` names its
    features as the current study does; features the current study lacks are left out."""
    if lesion.centroid_mm is None or lesion.longest_axial_mm is None or lesion.volume_ml is None:
        return None
    location = _SITE_CLASSES.get(lesion.location or "", "other")
    features: dict[str, dict[str, float]] = {}
    for key, value in lesion.features.items():
        if tags and key in tags:
            region, tag = tags[key]
            features.setdefault(region, {})[tag] = value
    return TimepointLesion(lesion.tracking_uid, lesion.tracking_identifier, UidSource.CARRIED, lesion.name, 0,
                           location, lesion.centroid_mm, lesion.longest_axial_mm, lesion.short_axis_mm or 0.0,
                           lesion.volume_ml, lesion.score, features)


def _prior_timepoint(report: PriorReport, tags: Mapping[str, tuple[str, str]]) -> TimePoint:
    """A prior SR as a time point, with the CT extent its image library describes (None, for
    an SR without one: coverage unknown)."""
    lesions = tuple(lesion for lesion in (_prior_lesion(x, tags) for x in report.lesions) if lesion is not None)
    return TimePoint(report.study_instance_uid, report.frame_of_reference_uid or "", report.ct.extent, lesions,
                     _prior_context(report))


def _current_context(result: StudyResult, acquisition: Acquisition) -> ExtractionContext:
    """Settings and signature in the words the SR states them, so that a prior read back from
    its SR compares like for like."""
    lines = codes.provenance_lines(result.provenance)
    return ExtractionContext({"settings": _line(lines, _SETTINGS_LINE)}, result.provenance.signature_id,
                             _line(lines, _SIGNATURE_LINE), acquisition)


def _prior_context(report: PriorReport) -> ExtractionContext:
    """What the prior SR says of its extraction and of its CT's acquisition."""
    signature = _line(report.notes, _SIGNATURE_LINE)
    ct = report.ct
    return ExtractionContext({"settings": _line(report.notes, _SETTINGS_LINE)}, signature.split(" ", 1)[0],
                             signature, Acquisition(ct.kvp, ct.convolution_kernel, ct.slice_thickness_mm))


def _line(lines: Sequence[str], prefix: str) -> str:
    """The text after `prefix` of the first line that starts with it; empty when none does."""
    return next((line.removeprefix(prefix) for line in lines if line.startswith(prefix)), "")


def _first_sizes(reports: Sequence[PriorReport]) -> dict[str, tuple[str, Size]]:
    """Tracking UID -> (study, size) at its first appearance: the lesion's baseline."""
    first: dict[str, tuple[str, Size]] = {}
    for report in reports:
        for lesion in filter(None, map(_prior_lesion, report.lesions)):
            first.setdefault(lesion.tracking_uid, (report.study_instance_uid, _size(lesion)))
    return first


def _link_note(link: Link) -> str:
    side = "lesion " + ", ".join(c.tracking_id for c in link.current) if link.current else (
        "prior lesion " + ", ".join(p.tracking_id for p in link.prior))
    reason = f" ({link.reason})" if link.reason else ""
    return f"{side}: {link.status.value.replace('_', ' ')}{reason}"


def _days(baseline_date: str, study_date: str) -> int | None:
    then, now = dicom_date(baseline_date), dicom_date(study_date)
    return None if then is None or now is None else (now - then).days


def _reference(report: PriorReport) -> PriorSrReference:
    return PriorSrReference(COMPREHENSIVE_3D_SR, report.sop_instance_uid, report.series_instance_uid,
                            report.study_instance_uid, report.study_date, report.study_time)


def _carried(result: StudyResult, identities: Mapping[str, CarriedIdentity]) -> StudyResult:
    """The study under its carried identities (lesions and the patient level's lesion references)."""
    def uid(own: str | None) -> str | None:
        return identities[own].tracking_uid if own is not None and own in identities else own

    lesions = [dataclasses.replace(lesion, tracking_uid=identities[lesion.tracking_uid].tracking_uid,
                                   tracking_id=identities[lesion.tracking_uid].tracking_id)
               if lesion.tracking_uid in identities else lesion for lesion in result.lesions]
    patient = dataclasses.replace(result.patient,
                                  least_infiltrated_tracking_uid=uid(result.patient.least_infiltrated_tracking_uid),
                                  highest_score_tracking_uid=uid(result.patient.highest_score_tracking_uid))
    return dataclasses.replace(result, lesions=lesions, patient=patient)
