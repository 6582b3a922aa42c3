"""Input selection: which of a study's instances are scored, and the lesion masks they hold.

instances -> (CT series, contour set) -> lesion masks. Shared by the worker (a study's spooled
instances) and the offline commands (a CT folder and a contour file). Everything study-specific
that can go wrong raises an InputError that names the problem, so the caller can fail this study
and carry on with the next.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError

from service.dicom import HeaderReader, frame_of_reference
from service.dicom_limits import InstanceLimits
from service.errors import FrameOfReferenceMismatch, InputError
from service.imaging.contours import contoured_roi_numbers, lesion_rois, rtstruct_to_masks, seg_to_masks
from service.imaging.volume import instance_name, load_ct_series
from service.model import CtSeries, LesionMask, StudyInfo
from service.observability import redact_uids
from service.sop_classes import CONTOUR_SOP_CLASSES, CT_SOP_CLASSES, RT_STRUCTURE_SET

logger = logging.getLogger(__name__)


@dataclass
class StudyInputs:
    """The parts of a study the pipeline scores."""

    ct: CtSeries
    contours: Dataset
    evidence: list[Dataset]  # headers of the CT instances and the contour object
    study: StudyInfo


DEFERRED_VALUE_BYTES = 4096
"""A CT image's values longer than this are read from its file when first used (pydicom's
deferred read): its pixel data (8 KB from a 64 x 64 matrix on) and no header attribute but
private blobs."""


def read_instance(path: Path, *, header_only: bool = False, role: str = "a stored instance") -> Dataset:
    """Read one stored instance; a file that does not parse is an input error of its study,
    naming the instance by `role`.

    `header_only` skips the pixel data, for a caller that needs none (an SR's reader).
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    except Exception as error:  # pydicom raises many types for damaged files
        raise _unreadable(role, path, error) from error


def read_study_instance(path: Path, *, ct_image: bool, role: str | None = None) -> Dataset:
    """Read one of a study's instances for select_inputs; a file that does not parse is an input
    error of its study.

    A CT image (`ct_image`) is parsed once: its header now, its pixel data from its place in the
    file when first used. Choosing the series to score needs only headers, so the pixels of other
    series (scouts, other reconstructions) are never read, and those of the chosen series are
    read without parsing the file again. Anything else (a contour object) is read whole: all of
    it is used, and the limits count its contour points undecoded (service.dicom_limits), which
    a deferred value does not allow. An error names the instance by `role`, by default by
    whether it is a CT image of the study.
    """
    try:
        return _read(path, ct_image=ct_image)
    except Exception as error:  # pydicom raises many types for damaged files
        role = role or ("a CT image of the study" if ct_image else "an instance of the study other than its CT images")
        raise _unreadable(role, path, error) from error


def _unreadable(role: str, path: Path, error: Exception) -> InputError:
    """A stored instance pydicom cannot parse: an input error of its study that names it by
    `role` and its UIDs redacted, never by its file name (spool files are named by their SOP
    Instance UID, and errors are shown to users and stored). The path and pydicom's message as
    is go to the DEBUG log."""
    logger.debug("cannot read %s as DICOM: %r", path, error)
    return InputError(f"{role} cannot be read as DICOM ({type(error).__name__}: {redact_uids(str(error))})")


def read_study_headers(ct_dir: Path, contour_file: Path) -> list[Dataset]:
    """A CT folder's DICOM files (their pixel data read later, only for the series chosen) and
    the contour object, as read_study_instance reads them, for select_inputs.

    Files that are not DICOM are skipped (export folders hold other files too); a damaged DICOM
    file is an InputError that names it by its position in the folder (file names are often
    UIDs).
    """
    headers = []
    paths = sorted(p for p in Path(ct_dir).iterdir() if p.is_file())
    for position, path in enumerate(paths, start=1):
        try:
            headers.append(_read(path, ct_image=True))
        except InvalidDicomError:
            continue
        except Exception as error:  # pydicom raises many types for damaged files
            raise _unreadable(f"file {position} of {len(paths)} (by name) of the CT folder", path, error) from error
    return headers + [read_study_instance(Path(contour_file), ct_image=False, role="the contour file")]


def _read(path: Path, *, ct_image: bool) -> Dataset:
    return pydicom.dcmread(path, defer_size=DEFERRED_VALUE_BYTES if ct_image else None)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def study_info(header: Dataset) -> StudyInfo:
    return StudyInfo(
        patient_id=_text(header, "PatientID"), patient_name=_text(header, "PatientName"),
        patient_birth_date=_text(header, "PatientBirthDate"), patient_sex=_text(header, "PatientSex"),
        study_instance_uid=_text(header, "StudyInstanceUID"), study_date=_text(header, "StudyDate"),
        study_time=_text(header, "StudyTime"), accession_number=_text(header, "AccessionNumber"),
        referring_physician_name=_text(header, "ReferringPhysicianName"), study_id=_text(header, "StudyID"),
        study_description=_text(header, "StudyDescription"),
    )


def _referenced_series(contours: Dataset) -> set[str]:
    """CT series the contour object names (RTSTRUCT study/series refs, SEG ReferencedSeries)."""
    series = {str(item.get("SeriesInstanceUID", "")) for item in contours.get("ReferencedSeriesSequence") or []}
    for frame in contours.get("ReferencedFrameOfReferenceSequence") or []:
        for study in frame.get("RTReferencedStudySequence") or []:
            series |= {str(item.get("SeriesInstanceUID", "")) for item in study.get("RTReferencedSeriesSequence") or []}
    return series


def _pick_ct_series(contours: Dataset, ct_instances: Sequence[Dataset]) -> list[Dataset]:
    """The CT series the contours lie on: same Frame of Reference, the referenced one if several.

    Errors count the series and Frames of Reference, never name their UIDs (errors are shown to
    users and stored); the UIDs go to the DEBUG log.
    """
    frame = frame_of_reference(contours)
    by_series: dict[str, list[Dataset]] = {}
    for ds in ct_instances:
        if str(ds.get("FrameOfReferenceUID", "")) == frame:
            by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    if not by_series:
        frames = sorted({str(ds.get("FrameOfReferenceUID", "")) for ds in ct_instances})
        series = {str(ds.get("SeriesInstanceUID", "")) for ds in ct_instances}
        logger.debug("contours in Frame of Reference %s; CT Frames of Reference %s", frame or "(none)", frames)
        raise FrameOfReferenceMismatch(
            f"the contours are in a Frame of Reference that none of the {len(series)} received CT series "
            f"is in (those are in {len(frames)} other Frame(s) of Reference): the contours were drawn on "
            "another scan" if frame else
            f"the contours state no Frame of Reference, so none of the {len(series)} received CT series "
            "can be matched to them"
        )
    if len(by_series) > 1:
        referenced = [uid for uid in by_series if uid in _referenced_series(contours)]
        if len(referenced) != 1:
            logger.debug("CT series %s share Frame of Reference %s", sorted(by_series), frame)
            raise InputError(
                f"{len(by_series)} CT series share the contours' Frame of Reference and the contours "
                "reference none of them unambiguously"
            )
        return by_series[referenced[0]]
    return next(iter(by_series.values()))


def select_inputs(datasets: Sequence[Dataset],
                  limits: InstanceLimits = InstanceLimits()) -> tuple[StudyInputs, list[str]]:
    """Choose the contour set and its CT series among a study's instances; (inputs, warnings).
    The CT instances are checked against `limits` before their frames are decoded."""
    warnings: list[str] = []
    contour_sets = [ds for ds in datasets if _sop_class(ds) in CONTOUR_SOP_CLASSES]
    ct_instances = [ds for ds in datasets if _sop_class(ds) in CT_SOP_CLASSES]
    if not contour_sets:
        raise InputError("no RTSTRUCT or SEG in the study")
    if not ct_instances:
        raise InputError("no CT image in the study")
    contours = contour_sets[-1]
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID"):  # the outputs reference the contour object by both
        HeaderReader("the contour object", InputError).text(contours, keyword, required=True)
    if len(contour_sets) > 1:
        logger.debug("scoring the last received of %d contour objects: %s", len(contour_sets),
                     contours.get("SOPInstanceUID", "?"))
        warnings.append(f"{len(contour_sets)} contour objects received; scored the last received")
    series = _pick_ct_series(contours, ct_instances)
    evidence = [_header(ds) for ds in series] + [_header(contours)]
    ct = load_ct_series([_with_pixels(ds) for ds in series], limits=limits)
    inputs = StudyInputs(ct=ct, contours=_with_pixels(contours), evidence=evidence, study=study_info(series[0]))
    return inputs, warnings


def _sop_class(ds: Dataset) -> str:
    """SOPClassUID, which must be a single value: it decides how the instance is read."""
    return HeaderReader(lambda: instance_name(ds), InputError).text(ds, "SOPClassUID")


def _with_pixels(ds: Dataset) -> Dataset:
    """The full instance, its pixel data in memory: a deferred value (read_study_instance) is
    read now from its place in the file, a header-only read is read again from its file."""
    if ds.get("SOPClassUID") == RT_STRUCTURE_SET:
        return ds
    if "PixelData" not in ds:
        return read_instance(Path(ds.filename), role=instance_name(ds)) if getattr(ds, "filename", None) else ds
    try:
        ds.get_item("PixelData")  # reads a deferred value, and keeps it
    except Exception as error:  # the file vanished or changed since its header was read
        logger.debug("cannot read the pixel data of %s: %r", getattr(ds, "filename", "?"), error)
        raise InputError(f"{instance_name(ds)}: its pixel data cannot be read "
                         f"({type(error).__name__}: {redact_uids(str(error))})") from error
    return ds


def _header(ds: Dataset) -> Dataset:
    """A copy without bulk pixel data: evidence lists need identities, not images.

    Elements are copied as stored, undecoded: a malformed value the evidence never reads must
    not fail the study here (and decoding each one is work for nothing). pydicom decodes one
    anyway, PixelRepresentation, to resolve elements whose VR depends on it; it is read first so
    that a malformed one is an InputError naming it.
    """
    HeaderReader(lambda: instance_name(ds), InputError).optional_integer(ds, "PixelRepresentation")
    header = Dataset()
    header.update({tag: ds.get_item(tag) for tag in ds.keys() if tag < 0x7FE00000})
    header.file_meta = getattr(ds, "file_meta", FileMetaDataset())  # pydicom converts a Dataset to this anyway
    return header


def lesion_masks(inputs: StudyInputs, lesion_roi_types: frozenset[str],
                 max_lesions: int | None = None, limits: InstanceLimits = InstanceLimits()
                 ) -> tuple[list[LesionMask], list[str]]:
    """The lesions of the contour object (checked against `limits` first), and notes on ROIs not
    scored (not lesion types).

    More than `max_lesions` lesions fail the study before any mask is drawn: a structure set of
    hundreds of ROIs would hold the scorer for minutes while other studies wait.
    """
    notes: list[str] = []
    contours = inputs.contours
    if contours.SOPClassUID == RT_STRUCTURE_SET:
        keep, notes = lesion_rois(contours, lesion_roi_types)
        _check_lesion_count(len(keep & contoured_roi_numbers(contours)), "lesion ROIs with contours", max_lesions)
        masks = rtstruct_to_masks(contours, inputs.ct, keep, limits)
    else:
        _check_lesion_count(_lesion_segment_count(contours), "segments", max_lesions)
        masks = seg_to_masks(contours, inputs.ct, limits)
    if not masks:
        raise InputError("the contour object holds no lesion with area" + (f" ({'; '.join(notes)})" if notes else ""))
    return masks, notes


def _lesion_segment_count(seg: Dataset) -> int:
    """The SEG's segments that can be lesions: a LABELMAP's background segment (the one numbered
    as its PixelPaddingValue, which highdicom writes for the unlabelled voxels) is none."""
    segments = seg.get("SegmentSequence") or []
    if seg.get("SegmentationType") != "LABELMAP" or "PixelPaddingValue" not in seg:
        return len(segments)
    background = seg.PixelPaddingValue
    return sum(1 for item in segments if item.get("SegmentNumber") != background)


def _check_lesion_count(count: int, what: str, max_lesions: int | None) -> None:
    if max_lesions is not None and count > max_lesions:
        raise InputError(f"the contour object has {count} {what}, more than max_lesions_per_study "
                         f"({max_lesions}); score a selection of lesions, or raise the setting")
