"""The one-page tumour-board summary: a SummaryInput drawn on one A4 page with matplotlib
(method.md section 7, README, "Tumour-board summary").

Why matplotlib alone: tables, plots and image tiles on one vector page need nothing else, and
its PDF backend writes identical bytes for identical input once the time stamps and the
producer are fixed, which the project's deterministic outputs (same study, same UIDs, same
bytes) rely on. Why one page however many lesions: a board looks at it on a screen in a few
seconds; the table and the key images are capped and the page says how many more the SR holds.

The figure is built on a plain Figure (no pyplot state) inside a fixed rcParams context; the
context is process-global in matplotlib, so renders take a lock.
"""

from __future__ import annotations

import io
import textwrap
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import matplotlib
# savefig would load the PDF backend (and fontTools, ~130 modules) at the first page rendered, in
# the first study's wait after a start: loaded with this module instead.
import matplotlib.backends.backend_pdf  # noqa: F401
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator
from matplotlib.transforms import Bbox
from matplotlib.typing import RcKeyType

from service.model import ScoreClass
from service.outputs.key_images import overlay_rgb, window_for
from service.outputs.summary_input import ResponseLines, ResponsePoint, SummaryInput, SummaryLesion

A4_INCHES = (8.27, 11.69)
MAX_TABLE_ROWS = 14
MAX_TILES = 8
"""Caps that keep the page one page (README, "Tumour-board summary": 14 rows, 8 key images)."""
PRODUCER = "radiomics-cds tumour board summary (matplotlib)"
PDF_METADATA = {"Title": "radiomics-cds tumour board summary", "Creator": "radiomics-cds",
                "Producer": PRODUCER, "CreationDate": None, "ModDate": None}
"""No dates and a fixed producer: the matplotlib defaults (the time, its version) would make
two renders of one study differ."""
RC_PARAMS: dict[RcKeyType, object] = {
    # Type 3: the glyphs the page uses, drawn by matplotlib itself, with the map from glyphs back
    # to characters that lets a reader (and pypdf) extract the text, accents and other scripts
    # included. Embedding TrueType (42) instead had fontTools subset each of the page's four
    # fonts at every render: about 0.7 s of the page's 1.1 s of CPU, at every study and every
    # start of the renderer.
    "pdf.fonttype": 3,
    "font.family": "DejaVu Sans",  # bundled with matplotlib: the same glyphs on every host
    "svg.hashsalt": "radiomics-cds",
    "axes.unicode_minus": False,
    "font.size": 7.0,
}
HIGH_RGB = "#c0392b"
LOW_RGB = "#2471a3"
ICPD_RGB = "#7d3c98"  # iRECIST's confirmation line: neither class colour
CANDIDATE_FILL = "#fdebd0"
BANNER_RGB = "#b03a2e"
SCALE_BAR_MM = 10.0

_RENDER_LOCK = threading.Lock()


def summary_pdf(page: SummaryInput) -> bytes:
    """The page as PDF bytes, identical for identical input."""
    with _rendering():
        out = io.BytesIO()
        summary_figure(page).savefig(out, format="pdf", metadata=PDF_METADATA)
        return out.getvalue()


def summary_png(page: SummaryInput, dpi: float) -> bytes:
    """The same page as a PNG (Agg), for a picture of it in documentation."""
    with _rendering():
        out = io.BytesIO()
        summary_figure(page).savefig(out, format="png", dpi=dpi, metadata={"Software": None})
        return out.getvalue()


@contextmanager
def _rendering() -> Iterator[None]:
    with _RENDER_LOCK, matplotlib.rc_context(RC_PARAMS):
        yield


def summary_figure(page: SummaryInput) -> Figure:
    """The page as a matplotlib Figure; call it inside the render context (`summary_pdf`)."""
    figure = Figure(figsize=A4_INCHES)
    top = _header(figure, page)
    top = _lesion_table(figure, page.lesions, top)
    top = _plots(figure, page, top)
    top = _tiles(figure, page.lesions, top)
    _footer(figure, page, top)
    return figure


def _header(figure: Figure, page: SummaryInput) -> float:
    study = page.study
    figure.text(0.05, 0.975, "Tumour board summary: CD8 radiomics", fontsize=13, weight="bold", va="top")
    figure.text(0.05, 0.955, f"Patient {study.patient_name} (ID {study.patient_id})   Study date "
                f"{_date(study.study_date)}   Accession {study.accession_number}   Time point "
                f"{page.time_point.label}", fontsize=7.5, va="top")
    notice = textwrap.fill(page.notice, 130)
    figure.text(0.5, 0.925, notice, fontsize=7.5, weight="bold", color="white", ha="center", va="center",
                bbox={"facecolor": BANNER_RGB, "edgecolor": "none", "boxstyle": "square,pad=0.5"})
    figure.text(0.05, 0.895, f"Signature: {page.signature}   Cut-off: {page.cutoff}", fontsize=7.5, va="top")
    return 0.88


def _lesion_table(figure: Figure, lesions: Sequence[SummaryLesion], top: float) -> float:
    """One row per lesion (capped); candidates' rows filled; changes when there are priors."""
    shown = lesions[:MAX_TABLE_ROWS]
    with_change = any(lesion.change is not None for lesion in lesions)
    columns = ["Lesion", "Site", "Volume mL", "LD mm", "SA mm", "CD8 score", "Class"]
    widths = [0.22] + [0.78 / (len(columns) - 1)] * (len(columns) - 1)  # identifiers are the longest
    if with_change:  # eleven columns: short headers, explained below the table
        columns = ["Lesion", "Site", "Vol. mL", "LD mm", "SA mm", "CD8", "Class", "D vs BL", "D vs prev.",
                   "Lesion resp.", "Match"]
        widths = [0.15, 0.09, 0.07, 0.07, 0.07, 0.10, 0.06, 0.08, 0.08, 0.09, 0.14]
    rows = [_row(lesion, with_change) for lesion in shown]
    row_height = 0.0145
    height = row_height * (len(rows) + 1)
    ax = figure.add_axes((0.05, top - height, 0.9, height))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=columns, colWidths=widths, loc="upper center", cellLoc="center",
                     bbox=Bbox.from_bounds(0.0, 0.0, 1.0, 1.0))
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    for (row, _), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#eaecee")
        elif shown[row - 1].candidacies:
            cell.set_facecolor(CANDIDATE_FILL)
    y = top - height - 0.008
    notes = [f"{lesion.tracking_id}: {'; '.join(lesion.candidacies)}" for lesion in lesions if lesion.candidacies]
    if len(lesions) > len(shown):
        notes.append(f"{len(lesions) - len(shown)} more lesions in the SR.")
    text = "Tumour-board candidates (shaded): " + ("   ".join(notes) if notes else "none")
    if with_change:
        text += ("   D: % change of the longest axial diameter, of the short axis for lymph nodes (RECIST 1.1), "
                 "against the baseline (BL) and the previous study; lesion-wise response (Sun 2022), algorithmic.")
    figure.text(0.05, y, textwrap.fill(text, 160), fontsize=6.5, va="top")
    return y - 0.05


def _row(lesion: SummaryLesion, with_change: bool) -> list[str]:
    score = "not computable" if lesion.score is None else f"{lesion.score:.2f}"
    row = [lesion.tracking_id, str(lesion.location).replace("_", " "), f"{lesion.volume_ml:.1f}",
           f"{lesion.longest_axial_diameter_mm:.1f}", f"{lesion.short_axis_mm:.1f}", score,
           str(lesion.score_class or "-")]
    if with_change:
        change = lesion.change
        if change is None:
            row += ["-", "-", "-", "-"]
        else:
            row += [_percent(change.diameter_pct_baseline.value), _percent(change.diameter_pct_previous.value),
                    change.category.replace("_", " "),
                    change.match_method.replace("_", " ") + (f" ({change.match_confidence})"
                                                             if change.match_confidence else "")]
    return row


def _plots(figure: Figure, page: SummaryInput, top: float) -> float:
    """The score strip, and beside it the sum of diameters over time when there is a series."""
    height = 0.15
    width = 0.42 if page.response else 0.88
    _score_strip(figure.add_axes((0.08, top - height, width, height)), page)
    if page.response:
        _response_plot(figure.add_axes((0.56, top - height, 0.40, height)), page.response, page.response_lines)
    return top - height - 0.07


def _score_strip(ax: Axes, page: SummaryInput) -> None:
    """Scored lesions sorted by score, bars coloured by class, the cut-off dashed; candidates
    labelled on their bars (method.md section 7)."""
    scored = sorted((lesion for lesion in page.lesions if lesion.score is not None),
                    key=lambda lesion: (lesion.score, lesion.tracking_id))
    ids = [lesion.tracking_id for lesion in scored]
    scores = [float(lesion.score) for lesion in scored if lesion.score is not None]
    colours = [HIGH_RGB if lesion.score_class == ScoreClass.HIGH else LOW_RGB for lesion in scored]
    ax.bar(range(len(scored)), scores, color=colours, width=0.7)
    ax.axhline(page.cutoff_value, color="black", linestyle="--", linewidth=0.8)
    ax.text(0.0, page.cutoff_value, f" cut-off {page.cutoff_value:g}", transform=ax.get_yaxis_transform(),
            va="bottom", fontsize=6)
    for x, lesion in enumerate(scored):
        if lesion.candidacies:
            ax.annotate("candidate", (x, scores[x]), xytext=(0, 2), textcoords="offset points", ha="center",
                        fontsize=5.5, weight="bold")
    ax.set_xticks(range(len(scored)), ids, fontsize=6 if len(ids) < 12 else 4.5, rotation=0 if len(ids) < 12 else 90)
    ax.set_ylabel("CD8 score")
    ax.set_ylim(0, max([*scores, page.cutoff_value]) * 1.2)
    unscored = [lesion.tracking_id for lesion in page.lesions if lesion.score is None]
    title = "CD8 score per lesion (red: high, blue: low)"
    ax.set_title(textwrap.fill(title + (f"; no score: {', '.join(unscored)}" if unscored else ""), 120), fontsize=7,
                 loc="left")


def _response_plot(ax: Axes, response: Sequence[ResponsePoint], lines: ResponseLines | None) -> None:
    """Sum of diameters over days from the first point, each point labelled with its
    categories, and the lines this study was assessed against (_threshold_lines)."""
    first = response[0].date
    days = [(point.date - first).days for point in response]
    sums = [point.sum_of_diameters_mm for point in response]
    ax.plot(days, sums, marker="o", color="black", linewidth=1, markersize=3)
    drawn = _threshold_lines(ax, lines, days, max(sums)) if lines is not None else []
    for day, total, point in zip(days, sums, response):
        label = " / ".join(category for category in (point.recist, point.irecist) if category)
        ax.annotate(label or "baseline", (day, total), xytext=(0, 4), textcoords="offset points", ha="center",
                    fontsize=5.5)
    ax.set_xlabel(f"days since {first.isoformat()}")
    ax.xaxis.set_major_locator(FixedLocator(days) if len(days) == 1 else MaxNLocator(integer=True))  # whole days
    ax.set_ylabel("sum of diameters (mm)")
    ax.set_ylim(0, (max([*sums, *drawn]) or 1.0) * 1.35)  # all 0 (complete response): still a scale
    ax.set_title("Sum of diameters, RECIST 1.1 / iRECIST (algorithmic)", fontsize=7, loc="left")


OFF_SCALE = 2.0
"""A line more than this many times the highest plotted sum is named, not drawn: a baseline
carried from beyond the plotted studies would otherwise press every point to the bottom."""


class _Line(NamedTuple):
    height_mm: float
    colour: str  # HIGH_RGB, LOW_RGB or ICPD_RGB
    span_days: tuple[int, int]
    text: str


def _threshold_lines(ax: Axes, lines: ResponseLines, days: Sequence[int], highest: float) -> list[float]:
    """RECIST 1.1's target-sum lines this study was assessed against, at the thresholds the
    assessment applied (the guideline's unless the site's response settings changed them), each
    labelled with the sum it derives from: partial response (e.g. -30 % of the baseline's sum)
    across the plot, as it holds for every follow-up, and progression (e.g. +20 % and at least
    +5 mm over the nadir's) over the last interval only, as the nadir was lower or equal before.
    Their labels are a legend, placed where the points leave room. Returns the heights drawn
    (the y-axis must hold them).

    While an iUPD on the targets is pending, iRECIST's confirmation too: +5 mm (the site's setting) over the
    target sum at iUPD, over the last interval. A point's overall category also counts new
    lesions and non-targets: a point labelled PD may lie under the target-sum lines."""
    thresholds, candidates = lines.thresholds, []
    last_interval = (days[max(len(days) - 2, 0)], days[-1])
    if lines.baseline_mm is not None:
        candidates.append(_Line(thresholds.partial_response_mm(lines.baseline_mm), LOW_RGB, (days[0], days[-1]),
                                f"PR: {thresholds.pr_pct:+g} % of baseline ({lines.baseline_mm:.1f} mm)"))
    if lines.nadir_mm is not None:
        candidates.append(_Line(thresholds.progression_mm(lines.nadir_mm), HIGH_RGB, last_interval,
                                f"PD of the target sum: {thresholds.pd_pct:+g} %, +{thresholds.pd_abs_mm:g} mm over "
                                f"nadir ({lines.nadir_mm:.1f} mm)"))
    if lines.iupd_mm is not None:
        candidates.append(_Line(thresholds.confirmed_progression_mm(lines.iupd_mm), ICPD_RGB, last_interval,
                                f"iCPD of the target sum: +{thresholds.icpd_abs_mm:g} mm over iUPD ({lines.iupd_mm:.1f} mm)"))
    shown = [line for line in candidates if highest == 0 or line.height_mm <= OFF_SCALE * highest]
    handles: list[Artist] = []
    for line in shown:
        start, end = line.span_days
        if start == end:
            handle = ax.axhline(line.height_mm, color=line.colour, linestyle=":", linewidth=0.8, label=line.text)
        else:
            (handle,) = ax.plot([start, end], [line.height_mm] * 2, color=line.colour, linestyle=":", linewidth=0.8,
                                label=line.text)
        handles.append(handle)
    handles += [Line2D([], [], linestyle="none", label=f"{line.text}: {line.height_mm:.1f} mm, above the plot")
                for line in candidates if line not in shown]
    if handles:  # where the points leave room, rather than labels beside the lines over the points' own
        ax.legend(handles=handles, loc="best", fontsize=5.5, framealpha=0.85, handlelength=1.5)
    return [line.height_mm for line in shown]


def _tiles(figure: Figure, lesions: Sequence[SummaryLesion], top: float) -> float:
    """Key images: the candidates first, then the lesions in order, up to MAX_TILES."""
    with_image = [lesion for lesion in lesions if lesion.key_image is not None]
    ordered = sorted(with_image, key=lambda lesion: not lesion.candidacies)[:MAX_TILES]
    figure.text(0.05, top + 0.01, "Key images: axial slice of largest contour area; contour yellow, "
                "peritumoral ring magenta; 10 mm bar", fontsize=7, weight="bold", va="bottom")
    width, height, pitch = 0.20, 0.115, 0.14
    for index, lesion in enumerate(ordered):
        row, column = divmod(index, 4)
        ax = figure.add_axes((0.05 + column * 0.23, top - 0.02 - row * pitch - height, width, height))
        ax.set_anchor("N")
        _tile(ax, lesion)
    rows = (len(ordered) + 3) // 4
    bottom = top - rows * pitch
    if len(with_image) > len(ordered):
        figure.text(0.05, bottom, f"{len(with_image) - len(ordered)} more key images: lesions in the SR.",
                    fontsize=6.5, va="top")
    return bottom - 0.02


def _tile(ax: Axes, lesion: SummaryLesion) -> None:
    image = lesion.key_image
    assert image is not None  # _tiles passes lesions with a key image only
    window = window_for(lesion.location)
    rows, columns = image.hu.shape
    row_mm, column_mm = image.pixel_spacing_mm
    ax.imshow(overlay_rgb(image, window), interpolation="none", aspect=row_mm / column_mm)
    bar = SCALE_BAR_MM / column_mm
    ax.plot([columns * 0.95 - bar, columns * 0.95], [rows * 0.93] * 2, color="white", linewidth=1.5)
    ax.text(2, rows * 0.5, "R", color="white", fontsize=6, va="center")
    ax.text(columns - 3, rows * 0.5, "L", color="white", fontsize=6, va="center", ha="right")
    mark = " (candidate)" if lesion.candidacies else ""
    score = "no score" if lesion.score is None else f"score {lesion.score:.2f}"
    ax.set_title(f"{lesion.tracking_id}{mark}\n{score}, z {image.slice_z_mm:.1f} mm", fontsize=5.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _footer(figure: Figure, page: SummaryInput, top: float) -> None:
    """The summary lines in the space left (the SR holds them all), then the provenance."""
    provenance = [*page.provenance, f"SR SOP Instance UID: {page.sr_sop_instance_uid}"]
    if page.prior_sr_uids:
        provenance.append("Prior SRs: " + ", ".join(page.prior_sr_uids))
    footer = [wrapped for line in provenance for wrapped in textwrap.wrap(line, 190)]
    figure.text(0.05, 0.015, "\n".join(footer), fontsize=5, va="bottom", color="#424949")
    summary = [wrapped for line in page.summary if line not in page.notice  # the notice is in the banner
               for wrapped in textwrap.wrap(line, 150)]
    room = int((top - 0.025 - _text_height(len(footer), 5.0)) / _text_height(1, 6.0))
    if len(summary) > room:
        summary = [*summary[:room - 1], "... the full summary is in the SR."]
    figure.text(0.05, top, "\n".join(summary), fontsize=6, va="top")


def _text_height(lines: int, points: float) -> float:
    """Height of `lines` lines of text as a fraction of the page: matplotlib's 1.2 line spacing
    times DejaVu Sans' line height (1.164 em), rounded up."""
    return lines * points * 1.2 * 1.2 / 72 / A4_INCHES[1]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def _date(dicom_date: str) -> str:
    return f"{dicom_date[:4]}-{dicom_date[4:6]}-{dicom_date[6:8]}" if len(dicom_date) == 8 else "unknown"

