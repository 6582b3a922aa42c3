"""The study pipeline shared by the service and the offline `score` command.

instances -> inputs and lesion masks (service.imaging.selection) -> crops -> scorer (any
service.scorer.Scorer) -> StudyResult -> SR + FHIR Bundle files. Everything study-specific that
can go wrong raises an InputError that names the problem, so the caller can fail this study and
carry on with the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from service.comparison import Comparison
from service.dicom_limits import InstanceLimits
from service.imaging.contours import LESION_ROI_TYPES
from service.imaging.crops import lesion_crop
from service.imaging.selection import StudyInputs, lesion_masks, select_inputs
from service.follow_up import acquisition, follow_up
from service.model import CtReference, StudyInfo, StudyResult
from service.outputs.artefacts import Artefact
from service.outputs.fhir import build_bundle, write_bundle
from service.outputs.sr import build_measurement_report, write_sr
from service.prior_frames import FrameSources, PriorCtSource
from service.response import ResponseInputs
from service.priors.reading import PriorReport
from service.priors.resolve import PriorsOutcome
from service.scorer import Scorer, score_lesions
from service.scoring.settings import ExtractionSettings
from service.sop_classes import SPATIAL_REGISTRATION

log = logging.getLogger(__name__)

PriorLookup = Callable[[StudyInfo], PriorsOutcome]
"""The scored study's priors (service.priors.resolve_priors bound to its sources)."""


@dataclass(frozen=True)
class WrittenOutputs:
    """A scored study's files in the outbox directory; each destination takes one artefact."""

    result: StudyResult
    paths: Mapping[Artefact, Path]
    sr_sop_instance_uid: str

    @property
    def sr_path(self) -> Path:
        return self.paths[Artefact.SR]

    @property
    def bundle_path(self) -> Path:
        return self.paths[Artefact.FHIR_BUNDLE]


def score_study(inputs: StudyInputs, scorer: Scorer, *, parallel: int = 2, warnings: Sequence[str] = (),
                lesion_roi_types: frozenset[str] = LESION_ROI_TYPES, max_lesions: int | None = None,
                limits: InstanceLimits = InstanceLimits()) -> StudyResult:
    """Score every lesion through the scorer, then the patient level."""
    provenance = scorer.describe()
    settings = ExtractionSettings.from_dict(dict(provenance.settings))
    masks, skipped = lesion_masks(inputs, lesion_roi_types, max_lesions, limits)
    study_warnings = list(warnings) + skipped + [f"lesion {m.number}: {w}" for m in masks for w in m.warnings]
    scored = score_lesions(scorer, [lesion_crop(inputs.ct, mask, settings) for mask in masks], parallel=parallel)
    contour = inputs.contours
    ct_reference = CtReference(
        series_instance_uid=inputs.ct.series_instance_uid,
        frame_of_reference_uid=inputs.ct.frame_of_reference_uid,
        sop_class_uid=inputs.ct.sop_class_uid,
        sop_instance_uids=tuple(dict.fromkeys(inputs.ct.sop_instance_uids)),
        contour_sop_class_uid=str(contour.SOPClassUID),
        contour_sop_instance_uid=str(contour.SOPInstanceUID),
        contour_series_instance_uid=str(contour.SeriesInstanceUID),
    )
    return StudyResult(
        study=inputs.study, ct=ct_reference, lesions=scored.lesions, patient=scored.patient,
        provenance=provenance, warnings=study_warnings,
    )


def write_outputs(result: StudyResult, evidence: Sequence[Dataset], outdir: Path,
                  patient_identifier_system: str, predecessor: Dataset | None = None,
                  comparison: Comparison = Comparison()) -> WrittenOutputs:
    """Build and durably write the SR and the FHIR Bundle of a scored study.

    `predecessor`: the SR an earlier scoring of this study produced, which this one replaces.
    `comparison`: its follow-up against prior SRs (service.follow_up); empty: a baseline.
    """
    sr = build_measurement_report(result, evidence, predecessor=predecessor, comparison=comparison)
    sr_path = write_sr(sr, outdir)
    bundle = build_bundle(result, sr_sop_instance_uid=str(sr.SOPInstanceUID),
                          patient_identifier_system=patient_identifier_system, comparison=comparison)
    bundle_path = write_bundle(bundle, outdir)
    return WrittenOutputs(result, {Artefact.SR: sr_path, Artefact.FHIR_BUNDLE: bundle_path}, str(sr.SOPInstanceUID))


def run_study(datasets: Sequence[Dataset], scorer: Scorer, outdir: Path, *,
              patient_identifier_system: str, parallel: int = 2,
              lesion_roi_types: frozenset[str] = LESION_ROI_TYPES, max_lesions: int | None = None,
              predecessor: Dataset | None = None, limits: InstanceLimits = InstanceLimits(),
              priors: PriorLookup | None = None, prior_ct: PriorCtSource | None = None,
              response_inputs: ResponseInputs = ResponseInputs()) -> WrittenOutputs:
    """The whole pipeline on one study's instances; with `priors`, looked up once the study is
    scored (its identity is then known), the outputs carry the follow-up against them. A prior
    in another Frame of Reference is mapped by a Spatial Registration object among the study's
    instances, else by registering the CT `prior_ct` gives for it. Without `priors`, the study is
    a baseline: its report still states each lesion's Baseline Category (targets chosen here).
    `response_inputs`: the response's time anchors (treatment start, baseline, irradiated lesions)."""
    inputs, warnings = select_inputs(datasets, limits)
    result = score_study(inputs, scorer, parallel=parallel, warnings=warnings, lesion_roi_types=lesion_roi_types,
                         max_lesions=max_lesions, limits=limits)
    reports: Sequence[PriorReport] = ()
    notes: Sequence[str] = ()
    if priors is not None:
        outcome = priors(result.study)
        reports, notes = outcome.reports, outcome.output_notes
    frames = FrameSources(inputs.ct, [ds for ds in datasets if ds.get("SOPClassUID") == SPATIAL_REGISTRATION],
                          prior_ct)
    followed = follow_up(result, inputs.ct.geometry, acquisition(inputs.ct, inputs.evidence), reports, notes, frames,
                         response_inputs)
    result, comparison = followed.result, followed.comparison
    return write_outputs(result, inputs.evidence, outdir, patient_identifier_system, predecessor, comparison)

