"""Tables a person reads in a terminal: lesions (score, show, the quick start) and features."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from service.feature_report import FeatureReport
from service.model import StudyResult
from service.outputs import codes


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


def _measurement_values(group) -> dict[tuple[str, str], float]:
    return {(m.name.value, m.name.scheme_designator): float(m.value) for m in group.get_measurements()}


def _evaluations(group) -> set[tuple[str, str]]:
    return {(e.value.value, e.value.scheme_designator) for e in group.get_qualitative_evaluations()}


def rows_from_sr(dataset: Dataset) -> tuple[list[TableRow], list[str]]:
    """Read our TID 1500 SR back with highdicom: the table rows and the report's own notes.

    Reading the SR (not our in-memory result) is the point: what the table shows is what a
    PACS or planning system receives.
    """
    sr = hd.sr.Comprehensive3DSR.from_dataset(dataset)
    rows = []
    content = cast(hd.sr.MeasurementReport, sr.content)  # from_dataset reads a TID 1500 document as one
    for group in content.get_volumetric_roi_measurement_groups():
        values = _measurement_values(group)
        flags = _evaluations(group)
        site = group.finding_sites[0].value.meaning if group.finding_sites else "other"

        def value(code: Code) -> float | None:
            return values.get((code.value, code.scheme_designator))

        rows.append(TableRow(
            name=str(group.tracking_identifier), location=site, volume_ml=value(codes.VOLUME),
            longest_axial_mm=value(codes.LONG_AXIS), short_axis_mm=value(codes.SHORT_AXIS),
            max_3d_mm=value(codes.MAX_3D_DIAMETER), score=value(codes.CD8_SCORE),
            note=lesion_note((codes.SBRT_CANDIDATE.value, codes.RCDS_SCHEME) in flags,
                             (codes.LOW_DOSE_RT_CANDIDATE.value, codes.RCDS_SCHEME) in flags,
                             None if value(codes.CD8_SCORE) is not None else "see report notes"),
        ))
    return rows, _comments(dataset)


def _comments(item: Dataset) -> list[str]:
    """Every TEXT "Comment" of the content tree, in order: the report's notes for a reader."""
    found = []
    for child in item.get("ContentSequence") or []:
        name = child.get("ConceptNameCodeSequence")
        if child.get("ValueType") == "TEXT" and name and name[0].CodeValue == codes.COMMENT.value:
            found.append(str(child.TextValue))
        found.extend(_comments(child))
    return found
