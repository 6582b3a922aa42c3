"""What a study's outputs say about its earlier studies: plain data, no DICOM or FHIR.

The follow-up of a study (service.follow_up) is computed in the pipeline layer from the
longitudinal core and the prior SRs; the SR and FHIR builders (service.outputs) only encode it.
These types sit in the foundation so that outputs need neither the longitudinal core nor the
priors package: the builders see numbers, codes' keys and UIDs, as they do for a StudyResult.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from service.model import Metric
from service.uids import derived_uid


@dataclass(frozen=True)
class TimePointInfo:
    """TID 1502 of one study: its rank among the patient's studies (1 = baseline).

    `days_since_baseline` is None when a study date is missing (no offset is stated then).
    """

    order: int = 1
    days_since_baseline: int | None = 0

    @property
    def is_baseline(self) -> bool:
        return self.order == 1

    @property
    def identifier(self) -> str:
        """Subject Time Point Identifier: T0, T1, ...; never a date or an accession number."""
        return f"T{self.order - 1}"

    @property
    def label(self) -> str:
        """Time Point text, e.g. "T0 (baseline)", "T2 (day 70)"."""
        if self.is_baseline:
            return f"{self.identifier} (baseline)"
        days = "day unknown" if self.days_since_baseline is None else f"day {self.days_since_baseline}"
        return f"{self.identifier} ({days})"


@dataclass(frozen=True)
class PriorSrReference:
    """One of our earlier SRs the comparison used: what a reference to it needs."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    study_date: str
    study_time: str


@dataclass(frozen=True)
class FeatureDelta:
    """One radiomics feature of a lesion against the previous time point: `tag` is the feature
    name of LesionResult.features[region], so the outputs code it as they code the feature."""

    region: str
    tag: str
    delta: Metric
    relative_percent: Metric


@dataclass(frozen=True)
class LesionComparison:
    """One current lesion against its earlier measurements (docs/method.md 5.1).

    `size_sources` are the Study Instance UIDs whose size Observation of this tracking UID the
    change derives from (baseline, previous): FHIR references them by deterministic identifier.
    `cd8_not_comparable` lists why the score and feature deltas must not be trusted (empty:
    comparable). `derived_from_uid`: the prior lesion a split fragment came from;
    `merged_uids`: the prior lesions merged into this one (each now 0 mm). For a split or a
    merge, the sizes are the group sums (RECIST) and there are no score or feature deltas.
    """

    match_method: str  # service.longitudinal.links.MatchMethod value
    match_confidence: str | None
    match_distance_mm: float | None
    diameter_delta_mm_baseline: Metric
    diameter_pct_baseline: Metric
    diameter_pct_previous: Metric
    volume_pct_baseline: Metric
    cd8_delta: Metric
    cd8_not_comparable: tuple[str, ...]
    category: str  # service.longitudinal.change.LesionCategory value
    size_sources: tuple[str, ...]
    derived_from_uid: str | None = None
    merged_uids: tuple[str, ...] = ()
    prior_uids: tuple[str, ...] = ()  # the prior lesions' tracking UIDs when not this lesion's own
    feature_deltas: tuple[FeatureDelta, ...] = ()
    flags: tuple[str, ...] = ()  # borderline category, a lesion under 5 mm (docs/method.md 5.1), in words


@dataclass(frozen=True)
class SeriesPoint:
    """One time point of the patient's RECIST series, for a "sum of diameters over time" view.

    `study_date` is DICOM DA (YYYYMMDD, empty when unknown); `sum_of_diameters_mm` is None when a
    target was not evaluable; the categories are None at the baseline (nothing to compare with).
    """

    study_instance_uid: str
    study_date: str
    sum_of_diameters_mm: float | None
    recist_overall: str | None  # OVERALL_RESPONSES key: "CR", "PR", "SD", "PD", "NE", "Non-CR/Non-PD"
    irecist_category: str | None  # IRECIST_CATEGORIES key: "iCR", ..., "iUPD", "iCPD"


@dataclass(frozen=True)
class PatternFlag:
    """A kinetics or pattern flag (hyperprogression definitions, pseudoprogression, ...):
    True, False, or None (not computable, with `reason`); `definition` says what it tests."""

    key: str  # a FLAG_CODES key: "champiat", "pseudoprogression", ...
    value: bool | None
    reason: str | None
    definition: str


@dataclass(frozen=True)
class RecistSums:
    """RECIST 1.1's sums of diameters at one follow-up (docs/method.md 5.3): this study's, the
    baseline's, the nadir's (and its study), and the changes against baseline and nadir. The
    longitudinal core's RecistResult computes them and the ResponseAssessment reports them as
    they are: both derive from this one declaration."""

    sod_mm: Metric
    baseline_sod_mm: Metric
    nadir_sod_mm: Metric
    nadir_study_uid: str | None
    percent_vs_baseline: Metric
    percent_vs_nadir: Metric
    mm_vs_nadir: Metric

    def recist_sums(self) -> dict[str, Any]:
        """These fields by name, to build another RecistSums from this one (the assessment from
        the result it reports)."""
        return {item.name: getattr(self, item.name) for item in fields(RecistSums)}


def recist_assessment_uid(baseline_study_uid: str) -> str:
    """The Tracking UID of the SR's RECIST 1.1 assessment group: one per baseline, the same for
    the patient's whole series, so a later report can tell whether a prior one measured from
    the same baseline."""
    return derived_uid("recist-assessment", [baseline_study_uid])


@dataclass(frozen=True)
class ResponseThresholds:
    """The RECIST 1.1 thresholds the assessment applied (the site's response settings, else the
    guideline's), for the outputs that state or draw them."""

    pr_pct: float  # against baseline, e.g. -30
    pd_pct: float  # against the nadir, e.g. +20 ...
    pd_abs_mm: float  # ... and at least this many mm, e.g. 5
    nontarget_pd_volume_pct: float  # the non-target proxy's progression, e.g. +73
    icpd_abs_mm: float  # iRECIST: the target sum this much over its value at iUPD confirms, e.g. 5

    def partial_response_mm(self, baseline_mm: float) -> float:
        """The sum of diameters at or under which the targets respond partially: pr_pct of the
        baseline's (service.longitudinal.recist.meets_pr)."""
        return (1 + self.pr_pct / 100) * baseline_mm

    def progression_mm(self, nadir_mm: float) -> float:
        """The sum of diameters from which the targets progress: pd_pct over the nadir's and at
        least pd_abs_mm more (service.longitudinal.recist.meets_pd)."""
        return max((1 + self.pd_pct / 100) * nadir_mm, nadir_mm + self.pd_abs_mm)

    def confirmed_progression_mm(self, iupd_mm: float) -> float:
        """iRECIST: the target sum that confirms an iUPD as iCPD, icpd_abs_mm over the sum at iUPD
        (service.longitudinal.irecist; one of its confirmations, new lesions are others)."""
        return iupd_mm + self.icpd_abs_mm


@dataclass(frozen=True)
class ResponseAssessment(RecistSums):
    """RECIST 1.1, iRECIST and growth kinetics of one follow-up (docs/method.md 5.2, 5.3).

    Categories are keys of the code tables in service.outputs.codes. `irecist_state` is the
    iRECIST state as JSON, carried in the SR so that the next report (on any replica) continues
    it. `previous_study_uid`: the prior study whose report holds the previous assessment (None
    when the previous study is the baseline). Every category requires radiologist confirmation.
    """

    baseline_study_uid: str
    n_targets: int
    target_response: str | None  # None: no targets at baseline
    non_target_response: str | None  # None: no non-target lesions at baseline
    new_lesion_count: int
    overall: str
    irecist: str
    irecist_state: str
    iupd_pending: bool
    iupd_date: str | None  # ISO date
    confirmation_window: tuple[str, str] | None  # ISO dates: iUPD + 28 .. + 56 days
    nlt_sum_mm: float
    kinetics: Mapping[str, Metric]  # KINETICS_CODES key -> value
    flags: tuple[PatternFlag, ...]
    notes: tuple[str, ...]  # RECIST flags, iRECIST reasons: for a reader
    thresholds: ResponseThresholds
    previous_study_uid: str | None = None
    iupd_target_sod_mm: float | None = None  # while an iUPD on the targets is pending: the target sum at iUPD
    # the RECIST group's Tracking UID: recist_assessment_uid of the baseline, or the one a prior
    # report carried when the baseline study is no longer among those compared (None: the former)
    assessment_uid: str | None = None


@dataclass(frozen=True)
class Comparison:
    """The follow-up of one study, ready to encode; an empty one is a baseline report.

    `baseline_categories`: tracking UID -> "target", "non_target" or "non_lesion" (CID 6145),
    for every lesion of every report, baseline included. `series`: the RECIST series from the
    baseline to this study, in time order (empty without a follow-up assessment).
    """

    time_point: TimePointInfo = TimePointInfo()
    priors: tuple[PriorSrReference, ...] = ()
    lesions: Mapping[str, LesionComparison] = field(default_factory=dict)  # by carried tracking UID
    notes: tuple[str, ...] = ()
    baseline_categories: Mapping[str, str] = field(default_factory=dict)
    response: ResponseAssessment | None = None
    series: tuple[SeriesPoint, ...] = ()
    anchors: tuple[str, ...] = ()  # the response's time anchors that were set: part of the SR's identity
    not_new: tuple[str, ...] = ()  # tracking UIDs of lesions not evaluable as new (first seen outside the scan before)
