"""The patient and study attributes every DICOM output of ours carries, from the scored study.

Why one place: the SR (through its evidence headers) and the tumour-board page's Encapsulated
PDF must land in the same patient and study with the same values; two copies of these lines
could drift (a Study ID rule fixed in one only).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from service.model import StudyInfo

SPECIFIC_CHARACTER_SET = "ISO_IR 192"
"""UTF-8: any name an input carried can be written."""
SH_MAX_LENGTH = 16


def set_patient_and_study(ds: Dataset, study: StudyInfo) -> None:
    """Patient and General Study attributes of `study` on `ds`, except the Study Instance UID
    (each caller says whose study it is: the SR's evidence headers keep their instance's)."""
    ds.PatientID = study.patient_id
    ds.PatientName = study.patient_name
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID = short_string(study.study_id)
    ds.StudyDescription = study.study_description


def short_string(value: str) -> str:
    """`value` if it fits an SH, else empty (Type 2): a truncated ID would name another study."""
    return value if len(value) <= SH_MAX_LENGTH else ""
