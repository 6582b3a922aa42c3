"""Which fetched SRs may serve as priors: ours, the same patient, not superseded, one per study.

Pure functions on datasets, so each rule (README, `radiomics-cds score --prior`) is testable alone and
the choice is deterministic: the same SRs in PACS give the same priors on every replica.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydicom.dataset import Dataset

from service.model import StudyInfo
from service.outputs.codes import MANUFACTURER, MEASUREMENT_REPORT

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
_TID_MEASUREMENT_REPORT = "1500"
_IDENTITY = (  # (attribute, its StudyInfo field or None for the issuer, words for the note)
    ("PatientID", "patient_id", "patient ID"),
    ("IssuerOfPatientID", None, "issuer of patient ID"),
    ("PatientBirthDate", "patient_birth_date", "patient birth date"),
    ("PatientSex", "patient_sex", "patient sex"),
)


def is_ours(dataset: Dataset) -> bool:
    """A TID 1500 Imaging Measurement Report in a Comprehensive 3D SR made by radiomics-cds."""
    templates = dataset.get("ContentTemplateSequence") or [Dataset()]
    titles = dataset.get("ConceptNameCodeSequence") or [Dataset()]
    return (str(dataset.get("SOPClassUID", "")) == COMPREHENSIVE_3D_SR
            and dataset.get("Manufacturer", "") == MANUFACTURER
            and templates[0].get("TemplateIdentifier", "") == _TID_MEASUREMENT_REPORT
            and (titles[0].get("CodeValue", ""), titles[0].get("CodingSchemeDesignator", ""))
            == (MEASUREMENT_REPORT.value, MEASUREMENT_REPORT.scheme_designator))


def identity_differences(dataset: Dataset, study: StudyInfo, issuer_of_patient_id: str = "") -> list[str]:
    """What of the patient's identity differs between a prior SR and the current study, in words.

    Exact comparison, empty included: a prior with an unknown birth date cannot be shown to be
    the same patient, and another patient's lesions must never become this patient's baseline.
    """
    differences = []
    for keyword, field, words in _IDENTITY:
        expected = issuer_of_patient_id if field is None else getattr(study, field)
        if str(dataset.get(keyword, "") or "").strip() != expected.strip():
            differences.append(words)
    return differences


def superseded(datasets: Iterable[Dataset]) -> set[str]:
    """SOP Instance UIDs that another SR names in its Predecessor Documents Sequence."""
    return {uid for dataset in datasets for uid in _referenced_instances(dataset, "PredecessorDocumentsSequence")}


def priors_used(dataset: Dataset) -> set[str]:
    """SOP Instance UIDs in an SR's Pertinent Other Evidence: ours put the prior SRs compared
    with there (and nothing of its own study), so this is what the report was compared with."""
    return _referenced_instances(dataset, "PertinentOtherEvidenceSequence")


def _referenced_instances(dataset: Dataset, keyword: str) -> set[str]:
    """SOP Instance UIDs in a hierarchical study/series/instance reference sequence."""
    return {str(instance.ReferencedSOPInstanceUID)
            for study in dataset.get(keyword) or []
            for series in study.get("ReferencedSeriesSequence") or []
            for instance in series.get("ReferencedSOPSequence") or []}


def choose(datasets: Sequence[Dataset]) -> Dataset:
    """The one SR of a study: complete first, then the latest content date and time, then the
    smallest SOP Instance UID (so two replicas pick the same one)."""
    by_uid = sorted(datasets, key=lambda ds: str(ds.SOPInstanceUID))
    return sorted(by_uid, reverse=True, key=lambda ds: (
        ds.get("CompletionFlag", "") == "COMPLETE", str(ds.get("ContentDate", "")), _time(ds.get("ContentTime", ""))))[0]


def _time(value: object) -> str:
    """HHMMSS[.frac] padded to compare as text ("0930" < "093015" < "1000")."""
    text = str(value or "")
    whole, _, fraction = text.partition(".")
    return whole.ljust(6, "0") + "." + fraction.ljust(6, "0")


def study_moment(date: str, time: str) -> tuple[str, str]:
    """A study's (date, time) for ordering; times padded as in `choose`."""
    return date, _time(time)
