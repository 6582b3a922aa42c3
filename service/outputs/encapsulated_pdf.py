"""The tumour-board summary for the PACS: a DICOM Encapsulated PDF (PS3.3 A.45.1).

Why a document and not images: the page is what a tumour board reads as it is (table, score
plot, key images), and a PACS shows an Encapsulated PDF in the study beside the CT and the SR.
highdicom has no Encapsulated PDF class and pydicom no helper, so the IOD's modules are filled
here with plain pydicom (DICOM PS3.3 A.45.1, Encapsulated PDF IOD): Patient, General Study,
Encapsulated Document Series (Modality DOC, its own series 9902), General Equipment,
SC Equipment (ConversionType SYN: made by software), Encapsulated Document, SOP Common.

The patient and study attributes come from the StudyResult, as the SR's do, so the document
lands in the same patient and study. Its UIDs are derived (service.uids) from the SR it
accompanies and the PDF's own digest: the same result and page give the same instance again
(a re-send replaces, never duplicates), a different page gives a new instance. Content date and
time are the study's, not the wall clock's, so identical inputs give identical bytes.
"""

from __future__ import annotations

import hashlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, UID

from service.model import StudyResult
from service.outputs import codes
from service.outputs.study_header import SPECIFIC_CHARACTER_SET, set_patient_and_study
from service.uids import derived_uid

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
COMPREHENSIVE_3D_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.34")
SERIES_NUMBER = 9902
"""README, "Tumour-board summary": fixed, beside the SR's 9900, so the summary has its own recognisable series."""
INSTANCE_NUMBER = 1
DOCUMENT_TITLE = "radiomics-cds tumour board summary"
SERIES_DESCRIPTION = "radiomics-cds tumour board summary (decision support)"
CONCEPT_NAME = ("126001", "DCM", "Oncology Measurement Report")


def build_encapsulated_pdf(pdf: bytes, result: StudyResult, sr_sop_instance_uid: str) -> Dataset:
    """The summary `pdf` of `result`, encapsulated, accompanying its SR `sr_sop_instance_uid`.

    The page is derived from the contour object (its lesions and key images) and says what the
    SR says: both are listed in the Source Instance Sequence, which the IOD requires when the
    document was made from other instances.
    """
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("the summary to encapsulate is not a PDF (no %PDF- header)")
    digest = hashlib.sha256(pdf).hexdigest()
    study, provenance = result.study, result.provenance
    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = derived_uid("summary-pdf-instance", [sr_sop_instance_uid, digest])
    set_patient_and_study(ds, study)
    ds.StudyInstanceUID = study.study_instance_uid
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = derived_uid("summary-pdf-series", [sr_sop_instance_uid])
    ds.SeriesNumber = SERIES_NUMBER
    ds.SeriesDescription = SERIES_DESCRIPTION
    ds.Manufacturer = codes.MANUFACTURER
    ds.ManufacturerModelName = provenance.algorithm_name
    ds.SoftwareVersions = provenance.algorithm_version
    ds.ConversionType = "SYN"
    ds.InstanceNumber = INSTANCE_NUMBER
    ds.ContentDate = study.study_date
    ds.ContentTime = study.study_time
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"  # the page shows the patient's identifiers
    ds.SourceInstanceSequence = [_reference(result.ct.contour_sop_class_uid, result.ct.contour_sop_instance_uid),
                                 _reference(COMPREHENSIVE_3D_SR_STORAGE, sr_sop_instance_uid)]
    ds.DocumentTitle = DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = [_code(*CONCEPT_NAME)]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)  # OB is padded to even length: this says where the PDF ends
    ds.EncapsulatedDocument = pdf + b"\x00" * (len(pdf) % 2)
    ds.file_meta = _file_meta(ds)
    return ds


def _reference(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta
