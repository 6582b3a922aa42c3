"""`radiomics-cds score`: the service's pipeline, offline, on a study's files."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from service.commands._progress import terminal_progress
from service.config import load_config
from service.imaging.selection import read_study_headers
from service.imaging.volume import read_ct_directory
from service.model import CtSeries
from service.outputs.fhir import FhirSettings
from service.pipeline import WrittenOutputs, run_study
from service.prior_frames import PriorCtSource
from service.priors.files import file_priors
from service.report import format_table, rows_from_result
from service.response import ResponseInputs
from service.roles.scorer import scoring_context
from service.scoring.in_process import InProcessScorer


def _print_result(written: WrittenOutputs) -> None:
    result = written.result
    print(format_table(rows_from_result(result)))
    print()
    print(f"Signature: {result.provenance.signature_id} {result.provenance.signature_version} "
          f"({result.provenance.signature_status}); risk group: {result.patient.risk_group} "
          f"(cut-off {result.patient.cutoff_name})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"SR:                    {written.sr_path}")
    print(f"Tumour-board page:     {written.summary_path}")
    print(f"  as Encapsulated PDF: {written.summary_document_path}")
    print(f"FHIR Bundle:           {written.bundle_path or 'not written (see the warnings above)'}")


def run(args: argparse.Namespace) -> int:
    """The service's pipeline, offline: the study's files, scored by the scoring core in this process."""
    flags = ("treatment_start", "baseline_study_uid", "irradiated_lesions", "response_settings_file")
    config = load_config(args.config, **{name: value for name in flags if (value := getattr(args, name)) is not None})
    response_inputs = ResponseInputs.from_config(config)  # a wrong rule setting stops before any scoring
    progress = terminal_progress("scored", "lesions")
    scorer = InProcessScorer(scoring_context(config), volume_filter_ml=config.volume_filter_ml,
                             max_message_bytes=config.grpc_max_message_bytes)
    written = run_study(read_study_headers(args.ct, args.rtstruct or args.seg), scorer, args.out,
                        fhir=FhirSettings.from_config(config),
                        parallel=config.scorer_workers, lesion_roi_types=frozenset(config.lesion_roi_types),
                        max_lesions=config.max_lesions_per_study, limits=config.instance_limits,
                        priors=file_priors(args.prior, config) if args.prior else None,
                        prior_ct=_directory_prior_ct(args.prior_ct),
                        response_inputs=response_inputs,
                        on_progress=progress.lesion_done if progress else None)
    _print_result(written)
    return 0


def _directory_prior_ct(directories: Sequence[Path]) -> PriorCtSource:
    """`--prior-ct` directories as the source of prior CTs: the one holding the prior study's CT
    (its series, when the prior SR names it). Read only when a registration needs it."""
    def prior_ct(study_uid: str, series_uid: str | None) -> CtSeries | None:
        for directory in directories:
            ct = read_ct_directory(directory)
            if ct.study_instance_uid == study_uid and series_uid in (None, ct.series_instance_uid):
                return ct
        return None
    return prior_ct
