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
from service.outputs.summary_input import SummaryInput, summary_input
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


def test_the_plot_draws_the_thresholds_the_assessment_applied() -> None:
    """A site at PR -40 %: the page's partial-response line says so (not the guideline's -30 %),
    and no threshold is drawn when there is no assessment to take them from."""
    result, _ = make_study_result(3)
    series = (SeriesPoint("1.2.1", "20240101", 45.0, None, None), SeriesPoint("1.2.2", "20240212", 46.0, "SD", "iSD"))
    page = summary_input(result, sr_sop_instance_uid="2.25.42", comparison=Comparison(series=series))
    _, site = _text(summary_pdf(dataclasses.replace(page, thresholds=ResponseThresholds(-40.0, 20.0, 5.0, 73.0))))
    assert "PR: -40 % of baseline" in site and "PD threshold" in site and "-30 %" not in site
    _, none = _text(summary_pdf(page))
    assert "PR:" not in none and "PD threshold" not in none
