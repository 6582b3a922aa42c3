"""Our SRs of synthetic studies of synthetic patients, made by the real SR builder: the priors
that the prior sources (a directory, Orthanc over DICOMweb and DIMSE) are tested with."""

from __future__ import annotations

import copy
import dataclasses

from pydicom.dataset import Dataset

from service.model import StudyInfo
from service.outputs.sr import build_measurement_report
from service.uids import derived_uid
from tests.support.synthetic_results import make_study_result


def synthetic_study(patient: str, date: str, *, birth_date: str = "19600101", sex: str = "F",
                    time: str = "100000") -> StudyInfo:
    """A synthetic study of a synthetic patient; the Study Instance UID follows from patient and date."""
    return StudyInfo(patient_id=patient, patient_name=f"SYNTHETIC^{patient}", patient_birth_date=birth_date,
                     patient_sex=sex, study_instance_uid=derived_uid("test-prior-study", [patient, date, time]),
                     study_date=date, study_time=time, accession_number="", referring_physician_name="",
                     study_id="1")


def our_sr(study: StudyInfo, *, version: str = "0.1.0", predecessor: Dataset | None = None) -> Dataset:
    """Our SR of `study` (the synthetic two-lesion SEG result) by algorithm `version`, replacing
    `predecessor` when given; not yet written."""
    result, evidence = make_study_result(2, "SEG")
    result.study = study
    result.provenance = dataclasses.replace(result.provenance, algorithm_version=version)
    headers = []
    for dataset in evidence:
        header = copy.deepcopy(dataset)
        header.StudyInstanceUID = study.study_instance_uid
        headers.append(header)
    return build_measurement_report(result, headers, predecessor=predecessor)
