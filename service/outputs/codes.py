"""Every coded concept the outputs (DICOM SR and FHIR) use, in one place.

Why one module: the SR and the FHIR Bundle must say the same thing in the same words, and a
reviewer must be able to check every code against its source without reading builder code.
Each concept names its source. Where DICOM already defines a concept (PS3.16 context groups,
as shipped in `pydicom.sr.codedict`), that code is used; only what no standard terminology
covers (the CD8 radiomics score and its patient-level aggregates) gets a private code in the
documented scheme `99RCDS`, whose designator starts with "99" as PS3.16 section 8.2 requires
for private schemes.

Codes are `pydicom.sr.coding.Code` so highdicom takes them as they are; the FHIR builder maps
their scheme designators to FHIR system URIs with `FHIR_SYSTEMS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydicom.sr.coding import Code

from service.comparison import ResponseAssessment
from service.model import LesionResult, LesionSource, Metric, PatientResult, Provenance, SignatureStatus, StudyResult

T = TypeVar("T")

# --- Coding schemes -----------------------------------------------------------------------

RCDS_SCHEME = "99RCDS"
"""Private coding scheme of radiomics-cds (PS3.16 8.2: private designators start with 99)."""
RCDS_SCHEME_NAME = "radiomics-cds private concepts"
RCDS_SCHEME_VERSION = "1"
RCDS_RESPONSIBLE_ORGANIZATION = "radiomics-cds project"
RCDS_FHIR_SYSTEM = "https://radiomics-cds.org/fhir/CodeSystem/rcds"
"""FHIR CodeSystem URI of the same private concepts (the code values are shared)."""
RCDS_IDENTIFIER_SYSTEM = "https://radiomics-cds.org/fhir/NamingSystem/rcds-id"
"""System of the deterministic business identifiers of every FHIR resource we write."""
RCDS_TRACKING_ID_SYSTEM = "https://radiomics-cds.org/fhir/NamingSystem/tracking-id"
"""System of a lesion's DICOM Tracking Identifier (text) on its FHIR BodyStructure."""

IBSI_SCHEME = "IBSI"
"""Image Biomarker Standardisation Initiative; DICOM PS3.16 lists it (e.g. CID 7469 uses it)."""
IBSI_FHIR_SYSTEM = "https://theibsi.github.io/ibsi/"
"""Home of the IBSI reference manual, where the identifiers (e.g. L0JK) are defined."""

DICOM_UID_SYSTEM = "urn:dicom:uid"
"""FHIR identifier system for DICOM UIDs (values are "urn:oid:<uid>"), as ImagingStudy uses."""

FHIR_SYSTEMS: dict[str, str] = {
    "SCT": "http://snomed.info/sct",
    "SRT": "http://snomed.info/srt",
    "LN": "http://loinc.org",
    "UCUM": "http://unitsofmeasure.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    IBSI_SCHEME: IBSI_FHIR_SYSTEM,
    RCDS_SCHEME: RCDS_FHIR_SYSTEM,
}
"""DICOM coding scheme designator -> FHIR system URI (HL7 terminology registry names; SRT, the
legacy SNOMED RT style codes older SEGs carry as anatomic region, e.g. T-62000 "Liver", as DICOM's
own FHIR value sets write it: these are not SNOMED CT concept ids)."""


def rcds_code(value: str, meaning: str) -> Code:
    """A concept of the private 99RCDS scheme (values are at most 16 characters, SH)."""
    if len(value) > 16:
        raise ValueError(f"private code value {value!r} is longer than 16 characters")
    return Code(value, RCDS_SCHEME, meaning)


# --- Units (UCUM, DICOM CID 7181 / UCUM specification) -------------------------------------

UNIT_ML = Code("mL", "UCUM", "milliliter")
UNIT_MM = Code("mm", "UCUM", "millimeter")
UNIT_SCORE = Code("{score}", "UCUM", "score")
"""UCUM annotation: a dimensionless score (UCUM section 2.5, curly-brace annotations = 1)."""
UNIT_LESIONS = Code("{lesions}", "UCUM", "lesions")
UNIT_ORGANS = Code("{organs}", "UCUM", "organs")

# --- Report-level concepts -----------------------------------------------------------------

MANUFACTURER = "radiomics-cds"
"""Manufacturer of every SR we write; how PACS queries (and service.priors) tell our SRs apart."""
MEASUREMENT_REPORT = Code("126000", "DCM", "Imaging Measurement Report")
"""Document title of a TID 1500 SR (highdicom's MeasurementReport default)."""

PROCEDURE_CT = Code("25045-6", "LN", "CT unspecified body region")
"""Procedure reported, DICOM CID 100 "Quantitative Diagnostic Imaging Procedures" (LOINC)."""
COMMENT = Code("121106", "DCM", "Comment")
"""DICOM DCM 121106; concept name of the reader-facing TEXT items."""
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
"""Container of TID 1500 row "Qualitative Evaluations" (UMLS C0034375, as PS3.16 uses it)."""

# --- Lesion concepts -----------------------------------------------------------------------

FINDING_LESION = Code("52988006", "SCT", "Lesion")
"""Finding type: SNOMED CT "Lesion". Deliberately not "Neoplasm": the service does not diagnose."""

VOLUME = Code("118565006", "SCT", "Volume")
"""DICOM CID 7469/7472 (SNOMED CT)."""
LONG_AXIS = Code("103339001", "SCT", "Long axis")
"""DICOM CID 7470 (SNOMED CT): the longest in-plane (axial) diameter, as RECIST measures it."""
SHORT_AXIS = Code("103340004", "SCT", "Short axis")
"""DICOM CID 7470 (SNOMED CT): longest diameter perpendicular to the long axis (RECIST nodes)."""
MAX_3D_DIAMETER = rcds_code("DIAM3DBOUNDARY", "Maximum 3D diameter between lesion boundary points")
"""The lesion's 3D maximum diameter as service.scoring.measures measures it: between boundary
points (voxel-face midpoints) on the CT's own grid. Not IBSI L0JK, "maximum 3D diameter of a
mesh", which is the feature morph_diam (computed on the resampled grid's mesh) and keeps L0JK:
one report must not carry two different values under one code."""

CENTER_OF_MASS = Code("128138", "DCM", "Center of Mass")
"""Name of each lesion's centroid point (SCOORD3D) in the SR."""

CD8_SCORE = rcds_code("CD8RS", "CD8 radiomics score")
"""Sun R et al., Lancet Oncol 2018;19:1180-91. No standard code exists."""
CD8_SCORE_CLASS = rcds_code("CD8RSCLASS", "CD8 radiomics score class")
CD8_SCORE_TERM = rcds_code("CD8RSTERM", "CD8 radiomics score term contribution")
"""One term of the signature (coefficient x normalised value, or x indicator); the term's name
is in the FHIR component's text and in the report's words."""
SCORE_CLASSES: dict[str, Code] = {
    "high": rcds_code("CD8RSHIGH", "High CD8 radiomics score (at or above cut-off)"),
    "low": rcds_code("CD8RSLOW", "Low CD8 radiomics score (below cut-off)"),
}
SCORE_NOT_COMPUTED = Code("114007", "DCM", "Measurement not attempted")
"""DICOM CID 42 "Numeric Value Qualifier": the lesion cannot carry a score (too small etc.)."""

LOCATION_SOURCE = rcds_code("LOCSRC", "Lesion location source")
LOCATION_SOURCES: dict[str, Code] = {
    "configuration": rcds_code("LOCSRCCONF", "Location from site configuration"),
    "seg_anatomic_region": rcds_code("LOCSRCSEG", "Location from SEG anatomic region"),
    "roi_name": rcds_code("LOCSRCROI", "Location from ROI name rules"),
    "default": rcds_code("LOCSRCDEF", "Default location (no rule matched)"),
}
"""docs/method.md section 1: every output names where a lesion's location class came from."""

FINDING_SITES: dict[str, Code] = {
    "adenopathy": Code("59441001", "SCT", "Lymph Node"),
    "lung": Code("39607008", "SCT", "Lung"),
    "liver": Code("10200004", "SCT", "Liver"),
    "head_and_neck": Code("774007", "SCT", "Head and Neck"),
}
"""Location class -> SNOMED CT body structure (DICOM CID 4 "Anatomic Region", pydicom codedict).

"other" has no entry on purpose: it is what is left when nothing matched, so it names no body
structure, and the outputs state the class in words instead of asserting an anatomic site.
"""

RT_TARGET_CANDIDATE = rcds_code("RTCAND", "Radiotherapy target candidate for tumour board")
SBRT_CANDIDATE = rcds_code("SBRTCAND", "Candidate for ablative SBRT (least-infiltrated lesion)")
LOW_DOSE_RT_CANDIDATE = rcds_code("LDRTCAND", "Candidate for low-dose RT (highest-score lesion)")
"""Sun R et al., J Immunother Cancer 2022;10:e004848: candidates to discuss, never orders."""

# --- Patient-level concepts ----------------------------------------------------------------

N_LESIONS = rcds_code("NLES", "Number of lesions")
N_COMPUTABLE = rcds_code("NLESCOMP", "Number of lesions with a computable score")
N_OVER_VOLUME_FILTER = rcds_code("NLESVOL", "Number of lesions over the volume filter")
VOLUME_FILTER = rcds_code("VOLFILT", "Lesion volume filter threshold")
TOTAL = Code("255619001", "SCT", "Total")
"""DICOM CID 7464 derivation; "Volume" derived "Total" is the total tumour volume."""
N_ORGANS = rcds_code("NORGANS", "Number of organs involved")
TOTAL_VOLUME = rcds_code("TOTVOL", "Total lesion volume")
"""FHIR component code for what the SR says as "Volume" derived "Total" (no post-coordination)."""
CUTOFF = rcds_code("CUTOFF", "CD8 radiomics score cut-off")
RISK_GROUP = rcds_code("RISKGRP", "CD8 radiomics risk group")
RISK_GROUPS: dict[str, Code] = {
    "no_lesion_over_1ml": rcds_code("RISKNOLES", "No lesion over the volume filter"),
    "high_score": rcds_code("RISKHIGH", "High CD8 radiomics score group"),
    "low_score": rcds_code("RISKLOW", "Low CD8 radiomics score group"),
    "not_computable": rcds_code("RISKNC", "Risk group not computable (no lesion over the filter could be scored)"),
}
"""docs/method.md section 4 risk groups, by the named cut-off (plus not_computable: see aggregate.py)."""
LEAST_INFILTRATED_LESION = rcds_code("LEASTINF", "Least-infiltrated lesion")
HIGHEST_SCORE_LESION = rcds_code("HIGHSCORE", "Highest-score lesion")
ORGAN_INVOLVED = rcds_code("ORGANINV", "Organ involved")
PATIENT_BIOMARKERS = rcds_code("PATCD8", "Patient-level CD8 radiomics biomarkers")
LESION_BIOMARKERS = rcds_code("LESCD8", "Lesion imaging biomarkers")
REPORT = rcds_code("CD8REPORT", "CD8 radiomics decision-support report")

SCORE_STATISTICS: dict[str, tuple[Code, Code]] = {
    "min": (Code("255605001", "SCT", "Minimum"), rcds_code("CD8RSMIN", "Minimum lesion CD8 score")),
    "max": (Code("56851009", "SCT", "Maximum"), rcds_code("CD8RSMAX", "Maximum lesion CD8 score")),
    "mean": (Code("373098007", "SCT", "Mean"), rcds_code("CD8RSMEAN", "Mean lesion CD8 score")),
    "sd": (
        Code("386136009", "SCT", "Standard Deviation"),
        rcds_code("CD8RSSD", "SD of lesion CD8 scores"),
    ),
    "skewness": (
        Code("126051", "DCM", "Skewness"),
        rcds_code("CD8RSSKEW", "Skewness of lesion CD8 scores"),
    ),
    "kurtosis": (
        Code("126052", "DCM", "Kurtosis"),
        rcds_code("CD8RSKURT", "Kurtosis of lesion CD8 scores"),
    ),
    "entropy": (
        rcds_code("ENTROPY", "Shannon entropy"),
        rcds_code("CD8RSENT", "Entropy of lesion CD8 scores"),
    ),
}
"""Statistic key of PatientResult.score_stats -> (SR derivation, FHIR component code).

In the SR a statistic is the CD8 score concept post-coordinated with a DICOM CID 7464
"Derivation" (Shannon entropy has none, hence a private one). FHIR components cannot
post-coordinate, so each statistic there has its own pre-coordinated private code.
"""

# --- FHIR-only codes -----------------------------------------------------------------------

LOINC_TUMOR_SIZE = Code("21889-1", "LN", "Size Tumor")
"""Observation code of mCODE's TumorSize profile, so tumour-size views find lesion results."""
MCODE_TUMOR_SIZE_PROFILE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-tumor-size"
"""mCODE (STU4) TumorSize, declared in meta.profile of the tumour-size Observation."""
CT_METHOD = Code("77477000", "SCT", "Computerized axial tomography (procedure)")
"""How the tumour size was measured: from the CT, in mCODE's TumorSize method value set."""
LOINC_TUMOR_LONGEST_DIMENSION = Code("33728-7", "LN", "Size.maximum dimension in Tumor")
"""mCODE TumorSize component for the longest dimension."""
LOINC_TUMOR_ADDITIONAL_DIMENSION = Code("33729-5", "LN", "Size additional dimension in Tumor")
"""mCODE TumorSize component for a further dimension: here the short axis."""
MEASUREMENT_GROUP = Code("125007", "DCM", "Measurement Group")
"""TID 1411's concept; the FHIR group Observation of a lesion carries it, as the HL7 DICOM SR
mapping guide's Imaging Measurement Group does."""
TRACKING_IDENTIFIER = Code("112039", "DCM", "Tracking Identifier")
TRACKING_UID = Code("112040", "DCM", "Tracking Unique Identifier")
RADIOMICS_FEATURES = rcds_code("RADFEAT", "Radiomics features (IBSI)")
SIGNATURE_STATUS = rcds_code("SIGSTATUS", "CD8 radiomics signature status")
SCORE_DISTRIBUTION = rcds_code("CD8DIST", "Distribution of lesion CD8 radiomics scores")
TUMOUR_BURDEN = rcds_code("BURDEN", "Tumour burden")

# --- Follow-up: time points, prior reports, lesion change (DICOM PS3.16, 99RCDS) ----------

UNIT_PERCENT = Code("%", "UCUM", "percent")
UNIT_DAY = Code("d", "UCUM", "day")
TIME_POINT_BASELINE = Code("C1442488", "UMLS", "Baseline")
"""TID 1502 Time Point Type of a baseline study (CID 6146)."""
TIME_POINT_POSTTREATMENT = Code("126074", "DCM", "Posttreatment")
"""TID 1502 Time Point Type of a follow-up study (CID 6146)."""
EVENT_BASELINE = Code("121079", "DCM", "Baseline")
"""Longitudinal Temporal Event Type (CID 280) the temporal offset counts from."""
PRIOR_REPORT = Code("122075", "DCM", "Prior report for current patient")
"""COMPOSITE item naming a prior SR the comparison used (CID 3407)."""
IMR_ASSOCIATED_STUDY = "https://profiles.ihe.net/RAD/IMR/StructureDefinition/associatedStudy"
"""IHE IMR 1.1.0 DiagnosticReport extension for comparison studies."""

LESION_CHANGE = rcds_code("LESCHG", "Lesion change")
LD_PCT_BASELINE = rcds_code("LDPCTBL", "Lesion diameter change versus baseline")
LD_PCT_PREVIOUS = rcds_code("LDPCTPREV", "Lesion diameter change versus previous time point")
LD_MM_BASELINE = rcds_code("LDMMBL", "Lesion diameter absolute change versus baseline")
VOLUME_PCT_BASELINE = rcds_code("VOLPCTBL", "Lesion volume change versus baseline")
CD8_SCORE_DELTA = rcds_code("CD8RSDELTA", "CD8 radiomics score change versus previous time point")
LESION_RESPONSE = rcds_code("LESRESP", "Lesion-wise response")
LESION_RESPONDING = rcds_code("LESRESPR", "Lesion responding")
LESION_PROGRESSING = rcds_code("LESPROG", "Lesion progressing")
LESION_STABLE = rcds_code("LESSTAB", "Lesion stable")
MATCH_METHOD = rcds_code("MATCHMETH", "Lesion match method")
MATCH_CONFIDENCE = rcds_code("MATCHCONF", "Lesion match confidence")
MATCH_DISTANCE = rcds_code("MATCHDIST", "Lesion match distance")
NOT_COMPARABLE = rcds_code("NOTCOMPARABLE", "Delta not comparable")
DERIVED_FROM_TRACKING_UID = rcds_code("DERIVEDUID", "Derived from tracking unique identifier")
"""UIDREF naming the lesion a split fragment came from (docs/method.md 5.1): no standard
code says "predecessor tracking UID", so it has a 99RCDS code of its own."""
MERGED_TRACKING_UID = rcds_code("MERGEDUID", "Merged tracking unique identifier")
"""UIDREF naming a lesion merged into this one (docs/method.md 5.1), one item each: 0 mm from
the merge on (RECIST 1.1, coalesced lesions). Every later report of the lesion repeats them, so
that the next one still counts the absorbed lesion as 0 mm, not as a lesion gone missing."""
NOT_EVALUABLE_AS_NEW = rcds_code("NOTEVALNEW", "Not evaluable as new lesion")
"""Yes on a lesion first seen where the scan before did not look (outside its coverage, or no
way to tell): not evaluable as new (docs/method.md 5.1). Every later report of the lesion says
it again, so that RECIST never counts it new at a later study either."""
FEATURE_DELTAS = LESION_CHANGE
"""The lesion group's container of feature deltas (docs/method.md 5.1), named by LESCHG:
one NUM per feature, named, derived and region-qualified like the feature itself."""

# --- Response assessment: RECIST 1.1, iRECIST, kinetics (DICOM PS3.16, 99RCDS) --------------

BASELINE_CATEGORY = Code("112016", "DCM", "Baseline Category")
BASELINE_CATEGORIES: dict[str, Code] = {
    "target": Code("112074", "DCM", "Target Lesion at Baseline"),
    "non_target": Code("112075", "DCM", "Non-Target Lesion at Baseline"),
    "non_lesion": Code("112076", "DCM", "Non-Lesion at Baseline"),
}
"""CID 6145, keyed by service.longitudinal.targets.BaselineCategory values: "once target,
always target" travels from report to report in every lesion group."""
RECIST_11 = Code("126081", "DCM", "RECIST 1.1")
"""CID 6147 "Response Criteria": the Measurement Method of the assessment group."""
CURRENT_RESPONSE = Code("112048", "DCM", "Current Response")
"""TID 4106's concept for a time point's response, valued from CID 6143/6144 (target and
non-target responses, each code says which)."""
TARGET_RESPONSES: dict[str, Code] = {
    "CR": Code("112041", "DCM", "Target Lesion Complete Response"),
    "PR": Code("112042", "DCM", "Target Lesion Partial Response"),
    "PD": Code("112043", "DCM", "Target Lesion Progressive Disease"),
    "SD": Code("112044", "DCM", "Target Lesion Stable Disease"),
}
NON_TARGET_RESPONSES: dict[str, Code] = {
    "CR": Code("112045", "DCM", "Non-Target Lesion Complete Response"),
    "Non-CR/Non-PD": Code("112046", "DCM", "Non-Target Lesion Incomplete Response or Stable Disease"),
    "PD": Code("112047", "DCM", "Non-Target Lesion Progressive Disease"),
}
"""CID 6144, keyed by the longitudinal core's response values; NE has no code there, so a
not-evaluable response is stated in words."""
RECIST_RESPONSE = rcds_code("RECIST11TPR", "RECIST 1.1 time-point response (algorithmic)")
OVERALL_RESPONSES: dict[str, Code] = {
    "CR": rcds_code("OVCR", "Overall complete response"),
    "PR": rcds_code("OVPR", "Overall partial response"),
    "SD": rcds_code("OVSD", "Overall stable disease"),
    "PD": rcds_code("OVPD", "Overall progressive disease"),
    "NE": rcds_code("OVNE", "Overall response not evaluable"),
    "Non-CR/Non-PD": rcds_code("OVNCRNPD", "Overall non-CR/non-PD"),
}
IRECIST_RESPONSE = rcds_code("IRECISTTPR", "iRECIST time-point response (algorithmic)")
IRECIST_CATEGORIES: dict[str, Code] = {
    "iCR": rcds_code("ICR", "iRECIST complete response"),
    "iPR": rcds_code("IPR", "iRECIST partial response"),
    "iSD": rcds_code("ISD", "iRECIST stable disease"),
    "iUPD": rcds_code("IUPD", "iRECIST unconfirmed progressive disease"),
    "iCPD": rcds_code("ICPD", "iRECIST confirmed progressive disease"),
    "NE": rcds_code("INE", "iRECIST not evaluable"),
    "Non-iCR/Non-iUPD": rcds_code("INCRNUPD", "iRECIST non-iCR/non-iUPD"),
}
SOD = rcds_code("SOD", "Sum of diameters")
SOD_BASELINE = rcds_code("SODBL", "Sum of diameters at baseline")
SOD_NADIR = rcds_code("SODNADIR", "Sum of diameters at nadir")
SOD_PCT_BASELINE = rcds_code("SODPCTBL", "Sum of diameters change versus baseline")
SOD_PCT_NADIR = rcds_code("SODPCTNAD", "Sum of diameters change versus nadir")
SOD_MM_NADIR = rcds_code("SODMMNAD", "Sum of diameters absolute change versus nadir")
NON_TARGET_PROXY = rcds_code("NTPROXY", "Non-target assessment: automated proxy")
NEW_LESION_CANDIDATES = rcds_code("NEWLESCAND", "Candidate new lesion")
NLT_SUM = rcds_code("NLTSUM", "New-lesion-target sum")
IUPD_PENDING = rcds_code("IUPDPEND", "iUPD pending")
IUPD_DATE = rcds_code("IUPDDATE", "iUPD date")
CONFIRMATION_WINDOW = rcds_code("CONFWIN", "Confirmation window")
IRECIST_STATE = rcds_code("IRECISTSTATE", "iRECIST state carried to the next report")
"""TEXT (JSON) of the whole iRECIST state (service.longitudinal.irecist.IRecistState):
IUPDPEND, IUPDDATE and CONFWIN state it for a reader, but continuing the state machine on any
replica also needs the reference sums and the new lesions seen, which none of those codes names."""
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")
"""Values of a flag that could be computed (DICOM CID 230 "Yes-No")."""
TUMOUR_GROWTH_KINETICS = rcds_code("TGKIN", "Tumour growth kinetics")
UNIT_PERCENT_PER_MONTH = Code("%/mo", "UCUM", "percent per month")
UNIT_MM_PER_MONTH = Code("mm/mo", "UCUM", "millimeter per month")
UNIT_RATIO = Code("{ratio}", "UCUM", "ratio")
KINETICS_CODES: dict[str, tuple[Code, Code]] = {
    "tgr_ref": (rcds_code("TGRREF", "Tumour growth rate before treatment"), UNIT_PERCENT_PER_MONTH),
    "tgr_exp": (rcds_code("TGREXP", "Tumour growth rate under treatment"), UNIT_PERCENT_PER_MONTH),
    "tgr_delta": (rcds_code("TGRDELTA", "Tumour growth rate difference"), UNIT_PERCENT_PER_MONTH),
    "tgr_ratio": (rcds_code("TGRRATIO", "Tumour growth rate ratio"), UNIT_RATIO),
    "tgk_ref": (rcds_code("TGKREF", "Tumour growth kinetics before treatment"), UNIT_MM_PER_MONTH),
    "tgk_exp": (rcds_code("TGKEXP", "Tumour growth kinetics under treatment"), UNIT_MM_PER_MONTH),
    "tgk_ratio": (rcds_code("TGKRATIO", "Tumour growth kinetics ratio"), UNIT_RATIO),
}
"""Kinetics value key (service.longitudinal.kinetics.Kinetics field) -> (concept, UCUM unit)."""
FLAG_CODES: dict[str, Code] = {
    "champiat": rcds_code("HPDCHAMP", "Hyperprogression (Champiat)"),
    "saada_bouzid": rcds_code("HPDSAADA", "Hyperprogression (Saada-Bouzid)"),
    "kato": rcds_code("HPDKATO", "Hyperprogression (Kato)"),
    "ferrara": rcds_code("HPDFERRARA", "Hyperprogression (Ferrara)"),
    "kas": rcds_code("HPDKAS", "Hyperprogression (Kas)"),
    "lo_russo": rcds_code("HPDLORUSSO", "Hyperprogression (Lo Russo)"),
    "pseudoprogression": rcds_code("PSEUDOPROG", "Pseudoprogression pattern"),
    "dissociated_response": rcds_code("DISSOCRESP", "Dissociated response"),
    "out_of_field_lesion": rcds_code("OOFRESPLES", "Out-of-field response (lesion)"),
    "out_of_field_recist": rcds_code("OOFRESPRECIST", "Out-of-field response (RECIST)"),
}
"""Flag key (service.longitudinal.kinetics.Flag name) -> its 99RCDS code. The lesion-level variant
of the dissociated response has no code of its own: it is stated in the group's comments."""
REQUIRES_CONFIRMATION = "requires radiologist confirmation"
LESION_RESPONSE_CAVEAT = f"Lesion-wise response (Sun 2022): algorithmic, {REQUIRES_CONFIRMATION}."
"""With every lesion-wise response category, in the SR (a Comment of the lesion's group) and in
the lesion-change Observation's notes: a category the outputs state is never unqualified."""
RESPONSE_NOTICE = ("Algorithmic RECIST 1.1 / iRECIST categories and growth kinetics: decision support, "
                   f"{REQUIRES_CONFIRMATION}. iRECIST: recommendations for data handling, not validated "
                   "response criteria (EORTC).")


# --- Acquisition of the scored CT, in the image library group (TID 1601), for later studies -
KVP = Code("113733", "DCM", "KVP")
"""DCM 113733 (as TID 10013 uses it): the series' peak kilovoltage."""
UNIT_KV = Code("kV", "UCUM", "kilovolt")
CONVOLUTION_KERNEL = rcds_code("CONVKERNEL", "Convolution kernel")
"""ConvolutionKernel (0018,1210) as TEXT: DICOM has no concept for it (113961 "Reconstruction
Algorithm" is FBP versus iterative, not the kernel)."""

LESION_CATEGORIES: dict[str, Code] = {
    "responding": LESION_RESPONDING, "progressing": LESION_PROGRESSING, "stable": LESION_STABLE,
}
"""Lesion-wise category (service.longitudinal.change.LesionCategory values) -> its code; a
lesion not evaluable gets no category item (its % changes say why)."""

# --- Choosing concepts (shared so that both outputs always pick the same one) -------------


def lookup(table: Mapping[str, T], key: str, what: str) -> T:
    """The concept for an enumerated result value; an unknown value is a contract breach.

    Failing here, rather than dropping the statement, keeps an output from silently losing a
    risk group or a location source. The message names the enumeration, never a patient.
    """
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"no concept for {what} {key!r}") from None


def finding_site(location_class: str) -> Code | None:
    """The anatomic site a location class asserts, or None for "other" (see FINDING_SITES)."""
    if location_class == "other":
        return None
    return lookup(FINDING_SITES, location_class, "location class")


def lesion_finding_site(lesion: LesionResult) -> Code | None:
    """Where the lesion is, for the SR's finding site and FHIR's bodySite alike: the SEG
    segment's own anatomic region when it has one (what the contour's author coded, possibly
    finer than the location class, or a site no class names); else the location class's body
    structure (None for "other")."""
    region = lesion.anatomic_region
    if region is not None and region.value and region.scheme:
        return Code(region.value, region.scheme, region.meaning)
    return finding_site(lesion.location_class)


def candidate_codes(patient: PatientResult, lesion: LesionResult) -> list[Code]:
    """The radiotherapy-target candidacies of a lesion (both, when it is the only scored one)."""
    candidacies = []
    if lesion.tracking_uid == patient.least_infiltrated_tracking_uid:
        candidacies.append(SBRT_CANDIDATE)
    if lesion.tracking_uid == patient.highest_score_tracking_uid:
        candidacies.append(LOW_DOSE_RT_CANDIDATE)
    return candidacies


# --- Reader-facing wording shared by the SR and the FHIR Bundle ----------------------------

DECISION_SUPPORT_NOTICE = (
    "Decision support for a multidisciplinary tumour board: imaging biomarkers to discuss, "
    "not a diagnosis and not a treatment order."
)


def signature_status_label(provenance: Provenance) -> str:
    """The status, with "- research use only" unless the signature is validated.

    docs/method.md section 3: every output that uses an uncalibrated signature must say so.
    """
    status = str(provenance.signature_status)  # plain text, from a member or its value
    return status if status == SignatureStatus.VALIDATED else f"{status} - research use only"


def signature_label(provenance: Provenance) -> str:
    """"<id> <version> <status>", e.g. "cd8-radiomics 0.1 uncalibrated - research use only"."""
    return (
        f"{provenance.signature_id} {provenance.signature_version} "
        f"{signature_status_label(provenance)}"
    )


def provenance_lines(provenance: Provenance) -> list[str]:
    """Everything that made the numbers, one statement per line (docs/method.md section 6).

    Sorted keys keep the lines identical for identical input, which the deterministic
    outputs depend on.
    """
    engines = ", ".join(f"{k} {v}" for k, v in sorted(provenance.engine_versions.items()))
    settings = "; ".join(f"{k}={v}" for k, v in sorted(provenance.settings.items()))
    return [
        f"Algorithm: {provenance.algorithm_name} {provenance.algorithm_version}",
        f"Signature: {signature_label(provenance)}",
        f"Signature citation: {provenance.signature_citation}",
        f"Engines: {engines}",
        f"Settings: {settings}",
    ]


def cutoff_label(patient: PatientResult) -> str:
    """The applied cut-off by name and value: outputs label which one applied (docs/method.md section 3)."""
    return f"{patient.cutoff_name} = {patient.cutoff_value:g}"


def lesion_label(lesion: LesionResult) -> str:
    """Which contour a lesion is and where it is, in words a tumour board can match to images.

    The ROI / segment number and name let a reader match the lesion to the contour it sees in
    a viewer (the SR also codes the ROI Number, for software), so they are always spelled out.
    """
    part = "ROI" if lesion.source == LesionSource.RTSTRUCT else "segment"
    return (
        f"{lesion.tracking_id} ({lesion.source} {part} {lesion.number} \"{lesion.name}\", "
        f"{lesion.location_class} by {lesion.location_source})"
    )


def flagged_lesion(result: StudyResult, tracking_uid: str | None) -> LesionResult | None:
    """The lesion a patient-level flag (least-infiltrated, highest score) points at, if any."""
    return next((x for x in result.lesions if x.tracking_uid == tracking_uid), None)


def contribution_sentence(lesion: LesionResult) -> str:
    """How a lesion's score is made: intercept plus each signature term, in the signature's names."""
    score = lesion.score
    assert score is not None, "only a scored lesion has contributions"
    intercept = score - sum(lesion.contributions.values())
    terms = " ".join(f"{'-' if value < 0 else '+'} {name} {abs(value):.3f}" for name, value in lesion.contributions.items())
    return f"Lesion {lesion.tracking_id}: score {score:.3f} = intercept {intercept:.3f} {terms}."


def _lesion_sentence(
    result: StudyResult, tracking_uid: str | None, role: str, action: str
) -> str:
    """One sentence on a flagged lesion, or why there is none."""
    lesion = flagged_lesion(result, tracking_uid)
    if lesion is None:
        return f"{role}: none (no lesion with a computable score)."
    return (
        f"{role}: {lesion_label(lesion)}, {lesion.volume_ml:.1f} mL, score {lesion.score:.2f}: "
        f"candidate for {action}, for tumour board discussion."
    )


def summary_lines(result: StudyResult) -> list[str]:
    """The clinician-readable summary: what was found, what could not be computed and why.

    Shared by the SR (one TEXT item per line) and the FHIR DiagnosticReport conclusion, so
    the PACS and the EHR never tell a tumour board different stories.
    """
    patient = result.patient
    lines = [
        DECISION_SUPPORT_NOTICE,
        f"CD8 radiomics signature {signature_label(result.provenance)}; "
        f"cut-off {cutoff_label(patient)}.",
        f"{patient.n_lesions} lesions ({patient.n_computable} with a computable score, "
        f"{patient.n_over_volume_filter} over {patient.volume_filter_ml:g} mL); "
        f"total volume {patient.total_volume_ml:.1f} mL; "
        f"organs involved: {', '.join(patient.organs_involved) or 'none'}.",
        f"Risk group: {lookup(RISK_GROUPS, patient.risk_group, 'risk group').meaning}.",
        _lesion_sentence(
            result,
            patient.least_infiltrated_tracking_uid,
            "Least-infiltrated lesion",
            "ablative SBRT",
        ),
        _lesion_sentence(
            result,
            patient.highest_score_tracking_uid,
            "Highest-score lesion",
            "low-dose immunogenic RT",
        ),
        "Mean and maximum scores were not prognostic: they are reported, not ranked.",
    ]
    lines += [
        contribution_sentence(x) if x.score is not None
        else f"Lesion {lesion_label(x)}: score not computable: {x.not_computable or 'no reason given'}."
        for x in result.lesions
    ]
    lines += [f"Lesion {lesion_label(x)}: {x.ring_cut.statement()}" for x in result.lesions if x.ring_cut]
    lines += [
        f"Score {key} not computable: {metric.reason}."
        for key, metric in patient.score_stats.items()
        if metric.value is None
    ]
    return lines + [f"Warning: {warning}" for warning in result.warnings]


def response_lines(response: ResponseAssessment | None) -> list[str]:
    """The response summary a reader sees first, shared by the SR's notes and the FHIR conclusion."""
    if response is None:
        return []

    def mm(metric: Metric) -> str:
        return "not computable" if metric.value is None else f"{metric.value:.1f} mm"

    def pct(metric: Metric) -> str:
        return "not computable" if metric.value is None else f"{metric.value:+.1f} %"

    lines = [
        f"RECIST 1.1 (algorithmic, {REQUIRES_CONFIRMATION}): overall {response.overall}; target "
        f"{response.target_response or 'none at baseline'}; non-target {response.non_target_response or 'none'} "
        f"(automated proxy); {response.new_lesion_count} new lesion candidate(s).",
        f"Sum of diameters {mm(response.sod_mm)} ({response.n_targets} targets): {pct(response.percent_vs_baseline)} "
        f"versus baseline {mm(response.baseline_sod_mm)}, {pct(response.percent_vs_nadir)} versus nadir "
        f"{mm(response.nadir_sod_mm)}.",
        f"iRECIST (algorithmic, {REQUIRES_CONFIRMATION}): {response.irecist}"
        + (f"; iUPD of {response.iupd_date} pending, confirmation window {' to '.join(response.confirmation_window)}"
           if response.iupd_pending and response.iupd_date and response.confirmation_window else "") + ".",
    ]
    raised = [FLAG_CODES[flag.key].meaning for flag in response.flags if flag.value]
    if raised:
        lines.append(f"Flags ({REQUIRES_CONFIRMATION}): {'; '.join(raised)}.")
    return lines
