"""The tumour-board page, rendered from the synthetic study of tests/support/synthetic_results.

References: the lesion identifiers, notice and signature wording come from the page's input;
the key images are disks drawn here (centre row 30, column 40, radius 12 pixels) with a ring
of 3 pixels around them, so where the contour and the ring lie on a tile follows from the
disk's equation, and their colours from the overlay's definition (contour yellow on top, ring
magenta blended at 45 % over the windowed CT), re-computed in the test.
"""

from __future__ import annotations

import dataclasses
import io

import matplotlib
import numpy as np
import pypdf
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import ndimage

from service.comparison import Comparison, LesionComparison, ResponseThresholds, SeriesPoint, TimePointInfo
from service.model import Metric
from service.outputs.key_images import KeyImage
from service.outputs.summary import MAX_TABLE_ROWS, MAX_TILES, RC_PARAMS, summary_figure, summary_pdf
from service.outputs.summary_input import ResponseLines, SummaryInput, summary_input
from tests.support.synthetic_results import make_study_result

pytestmark = pytest.mark.filterwarnings("ignore:The value length")  # STS StudyID: 17 characters
CENTRE, RADIUS, RING_PIXELS = (30, 40), 12, 3
LESION_HU, BACKGROUND_HU = 40.0, -800.0


def _disk_key_image(number: int, source_sop_instance_uid: str) -> KeyImage:
    rows, columns = np.mgrid[:60, :80]
    lesion = (rows - CENTRE[0]) ** 2 + (columns - CENTRE[1]) ** 2 <= RADIUS ** 2
    ring = ndimage.binary_dilation(lesion, iterations=RING_PIXELS) & ~lesion
    hu = np.where(lesion, LESION_HU, BACKGROUND_HU).astype(np.float32)
    return KeyImage(number, source_sop_instance_uid, 3, -200.0, (0, 0), (0.8, 0.8), hu, lesion, ring)


def _page(n_lesions: int = 3, **kwargs: object) -> SummaryInput:
    result, _ = make_study_result(n_lesions)
    images = [_disk_key_image(lesion.number, lesion.source_sop_instance_uid) for lesion in result.lesions]
    return summary_input(result, sr_sop_instance_uid="2.25.42", key_images=images, **kwargs)  # type: ignore[arg-type]


def _text(pdf: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return len(reader.pages), " ".join(reader.pages[0].extract_text().split())


@pytest.fixture(scope="module")
def baseline() -> tuple[SummaryInput, bytes]:
    page = _page(5)
    return page, summary_pdf(page)


def test_two_renders_are_byte_identical_and_carry_no_date(baseline: tuple[SummaryInput, bytes]) -> None:
    page, pdf = baseline
    assert summary_pdf(page) == pdf
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert reader.metadata is not None and "/CreationDate" not in reader.metadata and "/ModDate" not in reader.metadata
    box = reader.pages[0].mediabox
    assert (round(float(box.width) / 72 * 25.4), round(float(box.height) / 72 * 25.4)) == (210, 297)  # A4 in mm


def test_the_page_says_every_lesion_the_notice_the_signature_and_the_candidates(
        baseline: tuple[SummaryInput, bytes]) -> None:
    page, pdf = baseline
    pages, text = _text(pdf)
    assert pages == 1
    for lesion in page.lesions:
        assert lesion.tracking_id in text.split()
    assert "not a diagnosis" in text and "require radiologist confirmation" in text
    assert " ".join(page.notice.split()) in text
    assert "uncalibrated - research use only" in text and page.signature in text
    assert page.cutoff in text
    assert "L2: Candidate for ablative SBRT (least-infiltrated lesion)" in text
    assert "L3: Candidate for low-dose RT (highest-score lesion)" in text
    assert "SR SOP Instance UID: 2.25.42" in text


def test_names_in_other_scripts_are_drawn_as_text_a_reader_extracts() -> None:
    """The page's fonts are Type 3 (matplotlib's own glyph procedures): their characters must
    still come back as text, beyond ASCII too."""
    page = _page(1)
    name = "Müller-Ωmega^José Иванов"
    pdf = summary_pdf(dataclasses.replace(page, study=dataclasses.replace(page.study, patient_name=name)))
    fonts = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]["/Resources"]["/Font"].values()
    assert {font.get_object()["/Subtype"] for font in fonts} == {"/Type3"}
    assert f"Patient {name} (ID" in _text(pdf)[1]


def test_the_rendered_tile_shows_the_contour_colour_at_the_lesions_position(
        baseline: tuple[SummaryInput, bytes]) -> None:
    """On the Agg rendering of the same figure, at the display position of the disk's top edge
    pixel and of a ring pixel: yellow, and the ring's blend of the soft-tissue window's grey."""
    page, _ = baseline
    with matplotlib.rc_context(RC_PARAMS):
        figure = summary_figure(page)
        figure.set_dpi(300)
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    [tile] = [ax for ax in figure.axes if ax.get_title().startswith("L2 (candidate)")]  # liver: soft tissue
    low, width = 40.0 - 200.0, 400.0
    grey = np.clip((BACKGROUND_HU - low) / width, 0, 1) * 255
    ring_rgb = np.rint(0.55 * grey + 0.45 * np.array([255, 0, 255]))
    for (row, column), expected in [((CENTRE[0] - RADIUS, CENTRE[1]), (255, 255, 0)),
                                    ((CENTRE[0] + RADIUS, CENTRE[1]), (255, 255, 0)),
                                    ((CENTRE[0], CENTRE[1] - RADIUS - 2), tuple(ring_rgb))]:
        x, y = tile.transData.transform((column, row))
        assert tuple(pixels[pixels.shape[0] - int(y) - 1, int(x)]) == pytest.approx(expected, abs=1)


def test_priors_add_the_changes_and_the_response_plot() -> None:
    result, _ = make_study_result(3)
    change = LesionComparison("tracking_uid", "high", None, Metric(5.0), Metric(25.0), Metric(10.0), Metric(60.0),
                              Metric(0.1), (), "progressing", ("1.2.3",))
    series = (SeriesPoint("1.2.1", "20240101", 45.0, None, None), SeriesPoint("1.2.2", "20240212", 46.0, "SD", "iSD"),
              SeriesPoint("1.2.3", "20240325", 60.0, "PD", "iUPD"))
    comparison = Comparison(time_point=TimePointInfo(3, 84), lesions={result.lesions[2].tracking_uid: change},
                            series=series)
    pages, text = _text(summary_pdf(summary_input(result, sr_sop_instance_uid="2.25.42", comparison=comparison)))
    assert pages == 1
    assert "T2 (day 84)" in text
    assert "+25.0 % +10.0 % progressing" in text
    assert "SD / iSD" in text and "PD / iUPD" in text and "days since 2024-01-01" in text


def test_many_lesions_stay_on_one_page_and_say_how_many_more() -> None:
    page = _page(5)
    lesions = tuple(dataclasses.replace(page.lesions[i % 5], tracking_id=f"L{i + 1}") for i in range(30))
    pages, text = _text(summary_pdf(dataclasses.replace(page, lesions=lesions)))
    assert pages == 1
    assert f"{30 - MAX_TABLE_ROWS} more lesions in the SR." in text
    assert f"{30 - MAX_TILES} more key images: lesions in the SR." in text
    assert f"L{MAX_TABLE_ROWS}" in text.split()


def test_the_plot_draws_the_lines_the_assessment_measured_against() -> None:
    """Priors trimmed by the lookback: the plot starts at a follow-up (60 mm), while the
    assessment measured against a carried baseline of 100 mm and nadir of 50 mm. The lines are
    RECIST 1.1's (PR at -30 % of the baseline: 70 mm; PD at +20 % and at least +5 mm over the
    nadir: 60 mm), at a site's PR of -40 % the site's (60 mm); none without an assessment."""
    result, _ = make_study_result(3)
    series = (SeriesPoint("1.2.1", "20240101", 60.0, "PR", "iPR"), SeriesPoint("1.2.2", "20240212", 62.0, "PD", "iUPD"))
    page = summary_input(result, sr_sop_instance_uid="2.25.42", comparison=Comparison(series=series))
    guideline = ResponseLines(ResponseThresholds(-30.0, 20.0, 5.0, 73.0, 5.0), baseline_mm=100.0, nadir_mm=50.0)
    site = dataclasses.replace(guideline, thresholds=ResponseThresholds(-40.0, 20.0, 5.0, 73.0, 5.0))
    for lines, partial in ((guideline, 100.0 * 0.7), (site, 100.0 * 0.6)):
        drawn = dataclasses.replace(page, response_lines=lines)
        assert _horizontal_lines(drawn) == pytest.approx(sorted([partial, max(50.0 * 1.2, 50.0 + 5.0)]))
        _, text = _text(summary_pdf(drawn))
        assert f"PR: {lines.thresholds.pr_pct:+g} % of baseline (100.0 mm)" in text
        assert "PD of the target sum: +20 %, +5 mm over nadir (50.0 mm)" in text
    assert _horizontal_lines(page) == []
    _, none = _text(summary_pdf(page))
    assert "PR:" not in none and "PD of" not in none


def test_a_line_far_above_the_points_is_named_not_drawn() -> None:
    """A carried baseline of 200 mm against points about 20 mm: PR at 140 mm would press the
    points to the bottom; it is stated in words, the PD line drawn (25 mm: +5 mm over the 20 mm nadir
    is more than +20 %)."""
    result, _ = make_study_result(3)
    series = (SeriesPoint("1.2.1", "20240101", 20.0, "PR", "iPR"), SeriesPoint("1.2.2", "20240212", 21.0, "PR", "iPR"))
    page = summary_input(result, sr_sop_instance_uid="2.25.42", comparison=Comparison(series=series))
    lines = ResponseLines(ResponseThresholds(-30.0, 20.0, 5.0, 73.0, 5.0), baseline_mm=200.0, nadir_mm=20.0)
    drawn = dataclasses.replace(page, response_lines=lines)
    assert _horizontal_lines(drawn) == pytest.approx([25.0])
    _, text = _text(summary_pdf(drawn))
    assert "PR: -30 % of baseline (200.0 mm): 140.0 mm, above the plot" in " ".join(text.split())


def test_a_pending_iupd_draws_the_sum_that_would_confirm_it() -> None:
    """iUPD at 70 mm, pending: iRECIST confirms it as iCPD at +5 mm in the target sum (Seymour
    2017), so a line at 75 mm joins RECIST's (PR 0.7 x 50 = 35 mm is under the points, drawn;
    PD max(1.2 x 50, 50 + 5) = 60 mm)."""
    result, _ = make_study_result(3)
    series = (SeriesPoint("1.2.1", "20240101", 50.0, None, None), SeriesPoint("1.2.2", "20240301", 70.0, "PD", "iUPD"))
    page = summary_input(result, sr_sop_instance_uid="2.25.42", comparison=Comparison(series=series))
    lines = ResponseLines(ResponseThresholds(-30.0, 20.0, 5.0, 73.0, 5.0), baseline_mm=50.0, nadir_mm=50.0,
                          iupd_mm=70.0)
    drawn = dataclasses.replace(page, response_lines=lines)
    assert _horizontal_lines(drawn) == pytest.approx([35.0, 60.0, 75.0])
    _, text = _text(summary_pdf(drawn))
    assert "iCPD of the target sum: +5 mm over iUPD (70.0 mm)" in " ".join(text.split())


def test_a_sum_not_computable_draws_no_line_from_it() -> None:
    result, _ = make_study_result(3)
    series = (SeriesPoint("1.2.1", "20240101", 45.0, None, None), SeriesPoint("1.2.2", "20240212", 46.0, "SD", "iSD"))
    page = summary_input(result, sr_sop_instance_uid="2.25.42", comparison=Comparison(series=series))
    no_baseline = ResponseLines(ResponseThresholds(-30.0, 20.0, 5.0, 73.0, 5.0), baseline_mm=None, nadir_mm=10.0)
    assert _horizontal_lines(dataclasses.replace(page, response_lines=no_baseline)) == pytest.approx([15.0])


def _horizontal_lines(page: SummaryInput) -> list[float]:
    """The heights of the dotted horizontal lines on the response plot, bottom to top."""
    with matplotlib.rc_context(RC_PARAMS):
        figure = summary_figure(page)
    [plot] = [ax for ax in figure.axes if ax.get_title(loc="left").startswith("Sum of diameters")]
    return sorted(line.get_ydata()[0] for line in plot.get_lines() if line.get_linestyle() == ":")
