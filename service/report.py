"""Tables a person reads in a terminal: lesions (score, show, the quick start), lesion change
against earlier studies (show) and features."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from service.longitudinal.timepoint import NODE_LOCATION_CLASS
from service.model import StudyResult
from service.outputs import codes
from service.priors.reading import PriorLesion, read_prior_report

if TYPE_CHECKING:  # a type only: `show`, which reads SRs, would otherwise load the scoring engine
    from service.feature_report import FeatureReport


@dataclass(frozen=True)
class TableRow:
    """One lesion as the table shows it (built from a StudyResult or read back from an SR)."""

    name: str
    location: str
    volume_ml: float | None
    longest_axial_mm: float | None
    short_axis_mm: float | None
    max_3d_mm: float | None
    score: float | None
    note: str


_HEADER = ("lesion", "location", "volume mL", "long axis mm", "short axis mm", "3D max mm", "CD8 score", "note")


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fixed_width(cells: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as aligned text lines, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def format_table(rows: Sequence[TableRow], footer: Sequence[str] = ()) -> str:
    """A fixed-width table, then footer lines (signature status, patient level, ...)."""
    cells = [_HEADER] + [
        (r.name, r.location, _number(r.volume_ml, 2), _number(r.longest_axial_mm, 1), _number(r.short_axis_mm, 1),
         _number(r.max_3d_mm, 1), _number(r.score, 3), r.note)
        for r in rows
    ]
    return "\n".join(_fixed_width(cells) + list(footer))


def format_feature_table(report: FeatureReport) -> str:
    """The features command's text output: per ROI, one line per feature with core and ring."""
    blocks = []
    for roi in report.rois:
        title = f"{roi.source} {roi.number} ({roi.name}), {roi.voxel_count} voxels"
        if roi.not_computable:
            blocks.append(f"{title}: not computable: {roi.not_computable}")
            continue
        regions = list(roi.features)
        names = sorted({name for values in roi.features.values() for name in values})
        cells = [("feature", *regions)] + [
            (name, *(_feature_value(roi.features[region].get(name, float("nan"))) for region in regions))
            for name in names
        ]
        blocks.append("\n".join([title, *_fixed_width(cells)]))
    return "\n\n".join(blocks + [f"warning: {w}" for w in report.warnings])


def _feature_value(value: float | None) -> str:
    if value is None:
        return "undefined"
    return "-" if math.isnan(value) else f"{value:.6g}"


def lesion_note(is_least: bool, is_highest: bool, not_computable: str | None) -> str:
    """Tumour-board flags of a lesion: candidates, never orders."""
    notes = []
    if is_least:
        notes.append("least infiltrated: SBRT candidate")
    if is_highest:
        notes.append("highest score: low-dose RT candidate")
    if not_computable:
        notes.append(f"not computable: {not_computable}")
    return "; ".join(notes)


def rows_from_result(result: StudyResult) -> list[TableRow]:
    patient = result.patient
    return [
        TableRow(
            name=f"{lesion.number} {lesion.name}", location=lesion.location_class, volume_ml=lesion.volume_ml,
            longest_axial_mm=lesion.longest_axial_diameter_mm, short_axis_mm=lesion.short_axis_mm,
            max_3d_mm=lesion.max_3d_diameter_mm, score=lesion.score,
            note=lesion_note(lesion.tracking_uid == patient.least_infiltrated_tracking_uid,
                             lesion.tracking_uid == patient.highest_score_tracking_uid, lesion.not_computable),
        )
        for lesion in result.lesions
    ]


def rows_from_sr(dataset: Dataset) -> tuple[list[TableRow], list[str]]:
    """Read our TID 1500 SR back with highdicom: the table rows and the report's own notes.

    Reading the SR (not our in-memory result) is the point: what the table shows is what a
    PACS or planning system receives. The reader is the one priors use (service.priors.reading).
    """
    report = read_prior_report(dataset)
    rows = [
        TableRow(
            name=lesion.tracking_identifier, location=lesion.location or "other", volume_ml=lesion.volume_ml,
            longest_axial_mm=lesion.longest_axial_mm, short_axis_mm=lesion.short_axis_mm,
            max_3d_mm=lesion.max_3d_mm, score=lesion.score,
            note=lesion_note((codes.SBRT_CANDIDATE.value, codes.RCDS_SCHEME) in lesion.evaluations,
                             (codes.LOW_DOSE_RT_CANDIDATE.value, codes.RCDS_SCHEME) in lesion.evaluations,
                             None if lesion.score is not None else "see report notes"),
        )
        for lesion in report.lesions
    ]
    return rows, list(report.notes)


_CHANGE_HEADER = ("lesion", "D baseline mm", "D follow-up mm", "D % vs baseline", "volume % vs baseline",
                  "category", "CD8 score delta")
_CATEGORIES = {(code.value, code.scheme_designator): category for category, code in codes.LESION_CATEGORIES.items()}
_NODE_SITE = codes.finding_site(NODE_LOCATION_CLASS)


@dataclass(frozen=True)
class ChangeRow:
    """One lesion's change against the patient's earlier studies, read back from a follow-up SR.

    D is the size the change is measured on (docs/method.md 5.1): the longest axial diameter, or
    the short axis for a lymph node. The baseline D is the follow-up's minus LDMMBL: the SR
    states the change, not the baseline measurement.
    """

    name: str
    baseline_mm: float | None
    follow_up_mm: float | None
    diameter_pct: float | None
    volume_pct: float | None
    category: str  # responding / progressing / stable, "not evaluable" without a category item
    cd8_delta: float | None


def _change_row(lesion: PriorLesion) -> ChangeRow:
    node = _NODE_SITE is not None and lesion.location == _NODE_SITE.meaning
    current = lesion.short_axis_mm if node else lesion.longest_axial_mm
    delta = lesion.changes.get(codes.LD_MM_BASELINE.value)
    category = next((_CATEGORIES[e] for e in lesion.evaluations if e in _CATEGORIES), "not evaluable")
    return ChangeRow(
        name=lesion.tracking_identifier, follow_up_mm=current,
        baseline_mm=None if current is None or delta is None else current - delta,
        diameter_pct=lesion.changes.get(codes.LD_PCT_BASELINE.value),
        volume_pct=lesion.changes.get(codes.VOLUME_PCT_BASELINE.value),
        category=category, cd8_delta=lesion.changes.get(codes.CD8_SCORE_DELTA.value),
    )


def change_rows_from_sr(dataset: Dataset) -> list[ChangeRow]:
    """The lesions of a follow-up SR that were compared with a prior (those with change NUMs);
    empty for a baseline SR or one whose priors were unavailable."""
    return [_change_row(lesion) for lesion in read_prior_report(dataset).lesions if lesion.changes]


def format_change_table(rows: Sequence[ChangeRow]) -> str:
    """The change table, then what D means."""
    cells = [_CHANGE_HEADER] + [
        (r.name, _number(r.baseline_mm, 1), _number(r.follow_up_mm, 1), _signed(r.diameter_pct, 1),
         _signed(r.volume_pct, 1), r.category, _signed(r.cd8_delta, 3))
        for r in rows
    ]
    return "\n".join(_fixed_width(cells) + ["D: longest axial diameter (short axis for a lymph node); "
                                             "category at -30 % / +20 % of D vs baseline (Sun 2022)"])


def _signed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _content_items(items: Sequence[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _content_items(item.get("ContentSequence", []))


def response_line_from_sr(dataset: Dataset) -> str | None:
    """The RECIST 1.1 and iRECIST categories and the sum of diameters of a follow-up SR's
    "RECIST 1.1 assessment" group, in one line; None for an SR without one (a baseline)."""
    found: dict[str, str] = {}
    for item in _content_items(dataset.get("ContentSequence", [])):
        name = item.get("ConceptNameCodeSequence")
        if not name:
            continue
        code = str(name[0].CodeValue)
        if code in (codes.RECIST_RESPONSE.value, codes.IRECIST_RESPONSE.value) and item.get("ConceptCodeSequence"):
            found.setdefault(code, str(item.ConceptCodeSequence[0].CodeMeaning))
        elif code in (codes.SOD.value, codes.SOD_PCT_BASELINE.value) and item.get("MeasuredValueSequence"):
            found.setdefault(code, str(item.MeasuredValueSequence[0].NumericValue))
    if codes.RECIST_RESPONSE.value not in found:
        return None
    overall = found[codes.RECIST_RESPONSE.value]
    line = (f"Response (algorithmic, {codes.REQUIRES_CONFIRMATION}): RECIST 1.1 {overall[:1].lower()}{overall[1:]}; "
            f"{found.get(codes.IRECIST_RESPONSE.value, 'iRECIST not stated')}")
    if codes.SOD.value in found:
        line += f"; sum of diameters {float(found[codes.SOD.value]):.1f} mm"
        if codes.SOD_PCT_BASELINE.value in found:
            line += f" ({float(found[codes.SOD_PCT_BASELINE.value]):+.1f} % versus baseline)"
    return line
