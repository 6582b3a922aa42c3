"""The Scorer contract: the gRPC scorer (a real server on loopback) and the in-process scorer give
the same answers, the same size refusals and the same errors, which are ours, never grpc's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import pytest

from service.errors import LesionTooLarge, ScorerRefused, ScorerUnavailable
from service.imaging.crops import lesion_crop
from service.model import CodedConcept, LesionResult
from service.scorer import Scorer, score_lesions
from service.scoring.aggregate import aggregate_patient
from service.scoring.client import GrpcScorer
from service.scoring.in_process import InProcessScorer
from service.model import LesionCrop
from service.scoring.lesion import ScoringContext, score_lesion
from service.location import LocationRules
from service.scoring.panel import FeaturePanel, signature_panel
from service.scoring.server import build_server
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from tests.support.crops import whole_volume
from tests.support.synthetic_lesion import synthetic_lesion_ct

VOLUME_FILTER_ML = 2.0  # not the default: both scorers must pass it on
MAX_MESSAGE_BYTES = 512 * 1024  # the test crops fit; the whole synthetic CT (about 1.1 MB) does not
LOOPBACK = "127.0.0.1"

ScorerFactory = Callable[[ScoringContext], AbstractContextManager[Scorer]]


@contextmanager
def grpc_scorer(context: ScoringContext) -> Iterator[Scorer]:
    server, port, _ = build_server(context, f"{LOOPBACK}:0", volume_filter_ml=VOLUME_FILTER_ML,
                                   max_message_bytes=MAX_MESSAGE_BYTES, workers=2)
    server.start()
    try:
        with GrpcScorer(f"{LOOPBACK}:{port}", max_message_bytes=MAX_MESSAGE_BYTES, timeout_s=60) as scorer:
            yield scorer
    finally:
        server.stop(grace=None)


@contextmanager
def in_process_scorer(context: ScoringContext) -> Iterator[Scorer]:
    yield InProcessScorer(context, volume_filter_ml=VOLUME_FILTER_ML, max_message_bytes=MAX_MESSAGE_BYTES)


@pytest.fixture(scope="module")
def context() -> ScoringContext:
    signature = load_signature()
    return ScoringContext(ExtractionSettings(), signature, LocationRules(), signature_panel(signature))


@pytest.fixture(scope="module", params=[grpc_scorer, in_process_scorer], ids=["grpc", "in_process"])
def make_scorer(request: pytest.FixtureRequest) -> ScorerFactory:
    return request.param


@pytest.fixture(scope="module")
def scorer(make_scorer: ScorerFactory, context: ScoringContext) -> Iterator[Scorer]:
    with make_scorer(context) as scorer:
        yield scorer


@pytest.fixture(scope="module")
def crops(context: ScoringContext) -> list[LesionCrop]:
    """Two lesions: centred, and off-centre near a corner."""
    return [lesion_crop(*synthetic_lesion_ct(offset), context.settings) for offset in ((0, 0, 0), (17.3, -11.6, 5.2))]


@pytest.fixture(scope="module")
def reference(crops: list[LesionCrop], context: ScoringContext) -> list[LesionResult]:
    """What the scoring core itself computes for the crops, called directly."""
    return [score_lesion(crop, context) for crop in crops]


def test_describes_the_configuration_it_was_given(scorer: Scorer, context: ScoringContext) -> None:
    provenance = scorer.describe()
    assert provenance.algorithm_name == "radiomics-cds CD8 radiomics"
    assert (provenance.signature_id, provenance.signature_version) == (context.signature.id, context.signature.version)
    assert provenance.signature_status == "uncalibrated"
    assert provenance.settings["volumeFilterMl"] == VOLUME_FILTER_ML
    assert provenance.settings["featurePanel"] == context.panel.name
    assert provenance.settings["binLowerBound"] == -1000.0
    assert list(provenance.settings) == sorted(provenance.settings)  # as it crosses the wire
    assert "pyradiomics-bhklab" in provenance.engine_versions  # the distribution, not the import name
    assert ExtractionSettings.from_dict(dict(provenance.settings)) == context.settings


@pytest.mark.parametrize("parallel", [1, 2], ids=["one call", "two batches"])
def test_score_lesions_gives_exactly_what_the_core_computes(scorer: Scorer, crops: list[LesionCrop],
                                                            reference: list[LesionResult], context: ScoringContext,
                                                            parallel: int) -> None:
    """One batch: the lesions and the patient level in one call (score_study); two: a batch per
    thread, then AggregatePatient. Both the core's results, in the crops' order."""
    scored = score_lesions(scorer, crops, parallel=parallel)
    assert scored.lesions == reference  # every field, every feature, bit for bit
    assert [lesion.number for lesion in scored.lesions] == [crop.number for crop in crops]
    assert all(lesion.score is not None for lesion in scored.lesions)
    assert scored.patient == aggregate_patient(reference, context.signature, VOLUME_FILTER_ML)
    assert scored.patient.n_lesions == 2


def test_a_batch_is_scored_in_its_own_order(scorer: Scorer, crops: list[LesionCrop],
                                            reference: list[LesionResult]) -> None:
    assert scorer.score_batch(crops[::-1]) == reference[::-1]
    assert scorer.score_batch([crops[1]]) == [reference[1]]


def test_the_segments_anatomic_region_comes_back_with_the_score(scorer: Scorer, crops: list[LesionCrop]) -> None:
    """The SR's finding site for a SEG lesion is its segment's code, so it crosses the wire both ways."""
    head = CodedConcept(value="69536005", scheme="SCT", meaning="Head")
    lesion, plain = scorer.score_batch([dataclasses.replace(crops[0], anatomic_region=head), crops[0]])
    assert lesion.anatomic_region == head
    assert (lesion.location_class, lesion.location_source) == ("head_and_neck", "seg_anatomic_region")
    assert plain.anatomic_region is None


def test_aggregate_is_the_cores_patient_result(scorer: Scorer, reference: list[LesionResult],
                                               context: ScoringContext) -> None:
    lesions = [reference[0], dataclasses.replace(reference[1], tracking_uid="2.25.7", location_class="liver")]
    patient = scorer.aggregate(lesions)
    assert patient == aggregate_patient(lesions, context.signature, VOLUME_FILTER_ML)
    assert patient.volume_filter_ml == VOLUME_FILTER_ML
    assert patient.score_stats["min"].value == min(lesion.score for lesion in reference if lesion.score is not None)


def test_a_crop_over_the_message_limit_is_refused_for_its_size(scorer: Scorer, crops: list[LesionCrop]) -> None:
    ct, _ = synthetic_lesion_ct((0, 0, 0))
    oversized = whole_volume(crops[0], ct)
    scorer.check_size(crops[0])  # fits: no error
    with pytest.raises(LesionTooLarge, match=rf"lesion 1: .* {MAX_MESSAGE_BYTES} bytes \(setting grpc_max_message_bytes\)"):
        scorer.check_size(oversized)
    with pytest.raises(LesionTooLarge):
        scorer.score_batch([crops[0], oversized])
    with pytest.raises(LesionTooLarge):
        score_lesions(scorer, [crops[0], oversized])


def test_a_batch_over_the_message_limit_together_is_refused(scorer: Scorer, crops: list[LesionCrop]) -> None:
    """Each crop fits, the batch does not: both scorers refuse it, naming its lesions, while
    score_lesions cuts the study into batches that fit and scores it."""
    crowd = [dataclasses.replace(crops[0], number=n) for n in range(1, 1 + MAX_MESSAGE_BYTES // crops[0].image_hu.size)]
    with pytest.raises(LesionTooLarge, match=rf"lesions 1, 2, .*: together about \d+ bytes, more than .* {MAX_MESSAGE_BYTES}"):
        scorer.score_batch(crowd)
    assert [lesion.number for lesion in score_lesions(scorer, crowd, parallel=1).lesions] == [c.number for c in crowd]


def test_says_it_is_serving(scorer: Scorer) -> None:
    assert scorer.serving() is True


def test_a_signature_the_panel_cannot_feed_is_refused_as_a_failed_precondition(
        make_scorer: ScorerFactory, context: ScoringContext, crops: list[LesionCrop]) -> None:
    shape_only = dataclasses.replace(context, panel=FeaturePanel("shape only", {"core": {"shape": ()}}))
    with make_scorer(shape_only) as scorer, pytest.raises(ScorerRefused) as refused:
        scorer.score_batch([crops[0]])
    assert refused.value.code == "FAILED_PRECONDITION"
    assert refused.value.details.startswith(f"lesion 1: signature {context.signature.id}: feature ")
    assert str(refused.value) == f"FAILED_PRECONDITION: {refused.value.details}"


def test_a_stopped_grpc_scorer_is_unavailable(context: ScoringContext, crops: list[LesionCrop]) -> None:
    server, port, _ = build_server(context, f"{LOOPBACK}:0", workers=1)
    server.start()
    server.stop(grace=None).wait()
    with GrpcScorer(f"{LOOPBACK}:{port}", timeout_s=3) as scorer:
        assert scorer.serving() is False
        with pytest.raises(ScorerUnavailable) as unavailable:
            scorer.score_batch([crops[0]])
    assert unavailable.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_a_malformed_crop_is_refused_by_the_grpc_scorer_with_its_status(context: ScoringContext,
                                                                        crops: list[LesionCrop]) -> None:
    empty = dataclasses.replace(crops[0], number=4, mask=np.zeros_like(crops[0].mask))
    with grpc_scorer(context) as scorer, pytest.raises(ScorerRefused) as refused:
        scorer.score_batch([crops[1], empty])  # the whole call fails, naming the lesion
    assert (refused.value.code, refused.value.details) == ("INVALID_ARGUMENT", "lesion 4: the lesion mask is empty")
