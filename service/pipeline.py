"""The study pipeline shared by the service and the offline `score` command.

instances -> inputs and lesion masks (service.imaging.selection) -> crops -> scorer (any
service.scorer.Scorer) -> StudyResult (and each lesion's key image, cut from the masks while the
CT is at hand) -> SR, tumour-board page (PDF and its Encapsulated PDF) and FHIR Bundle files. Everything study-specific that
can go wrong raises an InputError that names the problem, so the caller can fail this study and
carry on with the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from service.comparison import Comparison
from service.dicom_limits import InstanceLimits
from service.imaging.contours import LESION_ROI_TYPES
from service.imaging.crops import lesion_crop
from service.imaging.selection import StudyInputs, lesion_masks, select_inputs
from service.follow_up import acquisition, follow_up
from service.model import CtReference, StudyResult
from service.durable import write_atomically
from service.observability import STUDY_STAGE_SECONDS
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.built import study_outputs
from service.outputs.collection_pause import collection_paused
from service.outputs.fhir import FhirSettings, bundle_withheld
from service.outputs.key_images import KeyImage, key_image
from service.outputs.page_process import PageRenderer
from service.outputs.sr import sr_identity
from service.prior_frames import FrameSources, PriorCtSource
from service.response import ResponseInputs
from service.priors.reading import PriorReport
from service.priors.resolve import PriorLookup
from service.scorer import LesionProgress, Scorer, score_lesions
from service.scoring.settings import ExtractionSettings
from service.sop_classes import SPATIAL_REGISTRATION

log = logging.getLogger(__name__)

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
    def bundle_path(self) -> Path | None:
        """None: no Bundle was written (service.outputs.fhir.bundle_withheld; the SR says why)."""
        return self.paths.get(Artefact.FHIR_BUNDLE)

    @property
    def summary_path(self) -> Path:
        return self.paths[Artefact.SUMMARY_PDF]

    @property
    def summary_document_path(self) -> Path:
        return self.paths[Artefact.SUMMARY_DOCUMENT]


@dataclass(frozen=True)
class ScoredStudy:
    """A scored study and its lesions' key images (service.outputs.key_images)."""

    result: StudyResult
    key_images: tuple[KeyImage, ...]


def score_study(inputs: StudyInputs, scorer: Scorer, *, parallel: int = 2, warnings: Sequence[str] = (),
                lesion_roi_types: frozenset[str] = LESION_ROI_TYPES, max_lesions: int | None = None,
                limits: InstanceLimits = InstanceLimits(), on_progress: LesionProgress | None = None) -> ScoredStudy:
    """Score every lesion through the scorer, then the patient level; cut each lesion's key
    image from the masks drawn for the scoring, with the scoring's ring width. `on_progress`:
    told as each lesion is scored (score_lesions)."""
    provenance = scorer.describe()
    settings = ExtractionSettings.from_dict(dict(provenance.settings))
    with STUDY_STAGE_SECONDS.labels("inputs").time():
        masks, skipped = lesion_masks(inputs, lesion_roi_types, max_lesions, limits)
        crops = [lesion_crop(inputs.ct, mask, settings) for mask in masks]
    study_warnings = list(warnings) + skipped + [f"lesion {m.number}: {w}" for m in masks for w in m.warnings]
    if (withheld := bundle_withheld(inputs.study)) is not None:
        study_warnings.append(withheld)
    with STUDY_STAGE_SECONDS.labels("scoring").time():
        scored = score_lesions(scorer, crops, parallel=parallel, on_progress=on_progress)
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
    result = StudyResult(
        study=inputs.study, ct=ct_reference, lesions=scored.lesions, patient=scored.patient,
        provenance=provenance, warnings=study_warnings,
    )
    with STUDY_STAGE_SECONDS.labels("inputs").time():
        key_images = tuple(key_image(inputs.ct, mask, settings.ringWidthMm) for mask in masks)
    return ScoredStudy(result, key_images)


@collection_paused()  # resumed once this returns: the SR's and the page's objects are then freed, never traversed
def write_outputs(result: StudyResult, evidence: Sequence[Dataset], outdir: Path,
                  fhir: FhirSettings, predecessor: Dataset | None = None,
                  comparison: Comparison = Comparison(), key_images: Sequence[KeyImage] = (),
                  pages: PageRenderer | None = None) -> WrittenOutputs:
    """Build and durably write the SR, the tumour-board page (PDF, and its Encapsulated PDF for
    the PACS) and the FHIR Bundle (the page as its presentedForm) of a scored study, each
    written as soon as it is built (service.outputs.built).

    `predecessor`: the SR an earlier scoring of this study produced, which this one replaces.
    `comparison`: its follow-up against prior SRs (service.follow_up); empty: a baseline.
    `key_images`: the lesions' key slices for the page (the comparison's RECIST series is
    plotted on it). `pages`: renders the page in its own process while the SR is built and
    written here (service.outputs.page_process); None: here, after the SR.

    The cyclic collector is paused throughout (service.outputs.collection_pause): paused around
    the SR's build alone, its collections only moved into the page's rendering.
    """
    identity = sr_identity(result, comparison)
    outputs = study_outputs(result, evidence, identity, fhir=fhir,
                            predecessor=predecessor, comparison=comparison, key_images=key_images, pages=pages)
    paths: dict[Artefact, Path] = {}
    with closing(outputs):  # a failed write closes it: a page still rendering is cancelled
        started = time.monotonic()
        for built in outputs:
            STUDY_STAGE_SECONDS.labels(built.stage).observe(time.monotonic() - started)
            with STUDY_STAGE_SECONDS.labels("writing").time():
                paths[built.artefact] = artefact_path(outdir, identity.sop_instance_uid, built.artefact)
                write_atomically(paths[built.artefact], built.save)
            started = time.monotonic()
    return WrittenOutputs(result, paths, identity.sop_instance_uid)


@dataclass(frozen=True)
class AssessedStudy:
    """A scored study compared with its priors, before anything is written."""

    result: StudyResult
    comparison: Comparison
    key_images: tuple[KeyImage, ...]
    evidence: Sequence[Dataset]


def assess_study(datasets: Sequence[Dataset], scorer: Scorer, *, parallel: int = 2,
                 lesion_roi_types: frozenset[str] = LESION_ROI_TYPES, max_lesions: int | None = None,
                 limits: InstanceLimits = InstanceLimits(), priors: PriorLookup | None = None,
                 prior_ct: PriorCtSource | None = None,
                 response_inputs: ResponseInputs = ResponseInputs(),
                 on_progress: LesionProgress | None = None) -> AssessedStudy:
    """Score one study's instances and compare it with its priors; with `priors`, looked up once
    the study is scored (its identity is then known). A prior in another Frame of Reference is
    mapped by a Spatial Registration object among the study's instances, else by registering the
    CT `prior_ct` gives for it. Without `priors`, the study is a baseline: its report still
    states each lesion's Baseline Category (targets chosen here). `response_inputs`: the
    response's time anchors (treatment start, baseline, irradiated lesions). `on_progress`: told
    as each lesion is scored."""
    with STUDY_STAGE_SECONDS.labels("inputs").time():
        inputs, warnings = select_inputs(datasets, limits)
    scored = score_study(inputs, scorer, parallel=parallel, warnings=warnings, lesion_roi_types=lesion_roi_types,
                         max_lesions=max_lesions, limits=limits, on_progress=on_progress)
    result = scored.result
    reports: Sequence[PriorReport] = ()
    notes: Sequence[str] = ()
    with STUDY_STAGE_SECONDS.labels("follow_up").time():
        if priors is not None:
            outcome = priors(result.study)
            reports, notes = outcome.reports, outcome.output_notes
        frames = FrameSources(inputs.ct, [ds for ds in datasets if ds.get("SOPClassUID") == SPATIAL_REGISTRATION],
                              prior_ct)
        followed = follow_up(result, inputs.ct.geometry, acquisition(inputs.ct, inputs.evidence), reports, notes,
                             frames, response_inputs)
    return AssessedStudy(followed.result, followed.comparison, tuple(scored.key_images), inputs.evidence)


def run_study(datasets: Sequence[Dataset], scorer: Scorer, outdir: Path, *,
              fhir: FhirSettings, parallel: int = 2,
              lesion_roi_types: frozenset[str] = LESION_ROI_TYPES, max_lesions: int | None = None,
              predecessor: Dataset | None = None, limits: InstanceLimits = InstanceLimits(),
              priors: PriorLookup | None = None, prior_ct: PriorCtSource | None = None,
              response_inputs: ResponseInputs = ResponseInputs(),
              on_progress: LesionProgress | None = None, pages: PageRenderer | None = None) -> WrittenOutputs:
    """The whole pipeline on one study's instances (assess_study), then its outputs written
    (`pages`: see write_outputs)."""
    assessed = assess_study(datasets, scorer, parallel=parallel, lesion_roi_types=lesion_roi_types,
                            max_lesions=max_lesions, limits=limits, priors=priors, prior_ct=prior_ct,
                            response_inputs=response_inputs, on_progress=on_progress)
    return write_outputs(assessed.result, assessed.evidence, outdir, fhir, predecessor,
                         assessed.comparison, assessed.key_images, pages)
