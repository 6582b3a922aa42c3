"""Reading our SRs back as priors: a lesion's core and ring groups are one lesion, and a prior
written before the split (one group per lesion, the region stated per measurement only) reads
back the same.

The earlier layout is rebuilt here from an SR of today's code, as that code wrote it: the ring
group's features (each with its own Measurement Method) moved into the lesion's group, no
Measurement Method at group level, the ring group gone. Expected values are the synthetic
lesions' own numbers.
"""

from __future__ import annotations

import copy

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from service.errors import InputError
from service.model import StudyResult
from service.outputs.feature_codes import feature_concept
from service.outputs.sr import build_measurement_report
from service.priors.reading import PriorReport, read_prior_report
from tests.support.synthetic_results import make_study_result

_IMAGING_MEASUREMENTS = "126010"
_TRACKING_UID = "112040"
_METHOD = "370129005"
_REGIONS = {"core": "RGNCORE", "ring": "RGNRING"}


def _child(item: Dataset, concept: str) -> Dataset | None:
    return next((c for c in item.get("ContentSequence", []) if c.ConceptNameCodeSequence[0].CodeValue == concept), None)


def _one_group_per_lesion(sr: Dataset) -> Dataset:
    """The SR as the code before the core / ring split wrote it."""
    old = copy.deepcopy(sr)
    measurements = _child(old, _IMAGING_MEASUREMENTS)
    assert measurements is not None
    kept: list[Dataset] = []
    lesions: dict[str, Dataset] = {}
    for group in measurements.ContentSequence:
        method = _child(group, _METHOD)
        if method is None:  # the patient-level group
            kept.append(group)
            continue
        group.ContentSequence = Sequence([c for c in group.ContentSequence if c is not method])
        uid = str(_child(group, _TRACKING_UID).UID)
        if method.ConceptCodeSequence[0].CodeValue == _REGIONS["ring"]:
            lesions[uid].ContentSequence.extend(
                c for c in group.ContentSequence if c.ValueType == "NUM" and _child(c, _METHOD) is not None)
        else:
            lesions[uid] = group
            kept.append(group)
    measurements.ContentSequence = Sequence(kept)
    return old


def _expected_features(result: StudyResult, uid: str) -> dict[str, list[float]]:
    """Per region code, the lesion's SR-coded finite feature values, sorted."""
    (lesion,) = [x for x in result.lesions if x.tracking_uid == uid]
    return {_REGIONS[region]: sorted(v for tag, v in values.items() if feature_concept(tag) is not None)
            for region, values in lesion.features.items() if values}


def _features(report: PriorReport, uid: str) -> dict[str, list[float]]:
    (lesion,) = [x for x in report.lesions if x.tracking_uid == uid]
    regions: dict[str, list[float]] = {}
    for key, value in lesion.features.items():
        regions.setdefault(key.split("/")[0], []).append(value)
    return {region: sorted(values) for region, values in regions.items()}


@pytest.fixture(scope="module", params=["RTSTRUCT", "SEG"])
def built(request: pytest.FixtureRequest) -> tuple[StudyResult, Dataset]:
    result, evidence = make_study_result(3, request.param)
    return result, build_measurement_report(result, evidence)


def test_a_lesions_core_and_ring_groups_read_back_as_one_lesion(built) -> None:
    result, sr = built
    report = read_prior_report(sr)
    assert [x.tracking_uid for x in report.lesions] == [x.tracking_uid for x in result.lesions]
    for lesion, read in zip(result.lesions, report.lesions):
        assert (read.volume_ml, read.score) == (pytest.approx(lesion.volume_ml), lesion.score)
        assert _features(report, lesion.tracking_uid) == _expected_features(result, lesion.tracking_uid)
    assert any(len(_features(report, x.tracking_uid)) == 2 for x in result.lesions)  # some lesion has both regions


def test_a_prior_written_before_the_split_reads_back_the_same(built) -> None:
    result, sr = built
    old = _one_group_per_lesion(sr)
    # the rebuilt layout is the earlier one: one group per lesion and the patient group, no group-level method
    lesion_groups = [g for g in _child(old, _IMAGING_MEASUREMENTS).ContentSequence
                     if _child(g, _TRACKING_UID) is not None]
    assert len(lesion_groups) == len(result.lesions) + 1
    assert all(_child(g, _METHOD) is None for g in lesion_groups)
    assert read_prior_report(old).lesions == read_prior_report(sr).lesions


def test_a_ring_group_without_its_lesion_group_is_a_specific_error(built) -> None:
    """A ring group alone has no sizes, statements or centroid to make a lesion of."""
    _, sr = built
    damaged = copy.deepcopy(sr)
    measurements = _child(damaged, _IMAGING_MEASUREMENTS)
    first_core = next(g for g in measurements.ContentSequence
                      if (method := _child(g, _METHOD)) is not None and method.ConceptCodeSequence[0].CodeValue == "RGNCORE"
                      and any(_child(o, _TRACKING_UID).UID == _child(g, _TRACKING_UID).UID
                              for o in measurements.ContentSequence if o is not g))
    measurements.ContentSequence = Sequence([g for g in measurements.ContentSequence if g is not first_core])
    with pytest.raises(InputError, match="peritumoral ring group without its lesion group"):
        read_prior_report(damaged)
