"""Lesion matching across studies (docs/method.md 5.1) and the tracking identity carried.

The expected links come from how each scene is built: prior centroids are moved into the
current frame by a rigid transform written out here (Rodrigues' formula), so the right partner
of every lesion is known before the matcher runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import random
import subprocess
import sys

import numpy as np
import pytest

from service.errors import InputError
from service.longitudinal.frames import FrameMapping
from service.longitudinal.identity import carried_identities
from service.longitudinal.links import Confidence, Link, LinkStatus, MatchMethod
from service.longitudinal.matching import NO_MAPPING, OUTSIDE_CURRENT, OUTSIDE_PRIOR, match_lesions
from service.longitudinal.names import normalise_name
from service.longitudinal.recist import (OverallResponse, TargetResponse, assess_series, baseline_assessment,
                                         follow_up_assessment)
from service.longitudinal.targets import select_targets
from service.longitudinal.timepoint import (Acquisition, ExtractionContext, TimePoint, TimepointLesion,
                                            UidSource)
from service.model import ImageGeometry

CONTEXT = ExtractionContext({}, "cd8", "1", Acquisition(120.0, "B30f", 1.0))
# A 512 x 512 x 120 CT: x and y in [-204.8, 204.8] mm, z in [-150, 150] mm.
EXTENT = ImageGeometry(size=(512, 512, 120), spacing=(0.8, 0.8, 2.5), origin=(-204.4, -204.4, -148.75))
SPHERE_10MM_ML = 4 / 3 * math.pi * 10.0**3 / 1000  # r = 10 mm: gate 20 mm between two of them


def lesion(uid: str, centroid: tuple[float, float, float] | np.ndarray, volume_ml: float = SPHERE_10MM_ML,
           name: str = "", location: str = "liver", source: UidSource = UidSource.DERIVED) -> TimepointLesion:
    x, y, z = (float(v) for v in centroid)
    return TimepointLesion(tracking_uid=uid, tracking_id=f"id {uid}", uid_source=source, name=name, number=1,
                           location_class=location, centroid_mm=(x, y, z), longest_axial_diameter_mm=20.0,
                           short_axis_mm=15.0, volume_ml=volume_ml)


def timepoint(lesions: list[TimepointLesion], frame: str, extent: ImageGeometry | None = EXTENT) -> TimePoint:
    return TimePoint("study " + frame, frame, extent, tuple(lesions), CONTEXT)


def rigid(angle_deg: float, axis: tuple[float, float, float], translation: tuple[float, float, float]) -> np.ndarray:
    """4x4 rotation about `axis` (Rodrigues) followed by a translation."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = math.radians(angle_deg)
    matrix = np.eye(4)
    matrix[:3, :3] = np.eye(3) + math.sin(a) * cross + (1 - math.cos(a)) * cross @ cross
    matrix[:3, 3] = translation
    return matrix


# The phantom transform: 5 degrees and 30 mm.
TRANSFORM = rigid(5.0, (1.0, 2.0, 3.0), (18.0, -24.0, 0.0))
MAPPING = FrameMapping(tuple(TRANSFORM.ravel().tolist()), "test rigid transform")


def moved(point: tuple[float, float, float], offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """A prior point in the current frame, plus an offset there."""
    return (TRANSFORM @ np.append(point, 1.0))[:3] + np.asarray(offset)


def by_status(links: tuple[Link, ...], status: LinkStatus) -> list[Link]:
    return [link for link in links if link.status is status]


def pairs(links: tuple[Link, ...]) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    return {(tuple(c.tracking_uid for c in link.current), tuple(p.tracking_uid for p in link.prior)) for link in links}


GRID = [(x, y, z) for x in (-90.0, -30.0, 30.0, 90.0) for y in (-60.0, 0.0) for z in (-40.0, 40.0)]
VOLUMES = [1.0, 2.0, 4.0, 8.0, 16.0, 3.0, 6.0, 12.0] * 2


def test_known_rigid_transform_links_every_lesion_at_zero_distance() -> None:
    prior = [lesion(f"p{i}", point, volume) for i, (point, volume) in enumerate(zip(GRID, VOLUMES))]
    current = [lesion(f"c{i}", moved(point), volume) for i, (point, volume) in enumerate(zip(GRID, VOLUMES))]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    assert pairs(links) == {((f"c{i}",), (f"p{i}",)) for i in range(len(GRID))}
    assert all(link.status is LinkStatus.MATCHED and link.method is MatchMethod.GEOMETRY for link in links)
    assert all(link.distance_mm == pytest.approx(0.0, abs=1e-9) for link in links)
    assert {link.registration for link in links} == {"test rigid transform"}


def test_jitter_of_5_mm_still_links_every_lesion_and_reports_the_jitter_as_distance() -> None:
    rng = random.Random(7)
    jitter = [(rng.uniform(-5.0, 5.0), rng.uniform(-5.0, 5.0), rng.uniform(-5.0, 5.0)) for _ in GRID]
    prior = [lesion(f"p{i}", point, volume) for i, (point, volume) in enumerate(zip(GRID, VOLUMES))]
    current = [lesion(f"c{i}", moved(point, j), volume) for i, (point, j, volume) in enumerate(zip(GRID, jitter, VOLUMES))]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    assert pairs(links) == {((f"c{i}",), (f"p{i}",)) for i in range(len(GRID))}
    distances = {link.current[0].tracking_uid: link.distance_mm for link in links}
    for i, j in enumerate(jitter):
        assert distances[f"c{i}"] == pytest.approx(math.sqrt(sum(v * v for v in j)), abs=1e-9)


def test_without_a_mapping_geometry_is_not_available_and_nothing_is_new_or_disappeared() -> None:
    prior = [lesion("p0", GRID[0])]
    current = [lesion("c0", moved(GRID[0]))]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), mapping=None)
    assert [(link.status, link.reason) for link in links] == [(LinkStatus.NOT_EVALUABLE, NO_MAPPING)] * 2


def test_same_frame_of_reference_uses_the_identity_whatever_mapping_is_given() -> None:
    prior = [lesion("p0", (10.0, 20.0, 30.0))]
    current = [lesion("c0", (12.0, 20.0, 30.0))]
    links = match_lesions(timepoint(current, "1.1"), timepoint(prior, "1.1"), MAPPING)
    assert pairs(links) == {(("c0",), ("p0",))}
    assert links[0].distance_mm == pytest.approx(2.0)
    assert links[0].registration == "same frame of reference"


def test_split_one_prior_into_two_fragments() -> None:
    parent = lesion("p0", GRID[0], volume_ml=10.0)
    fragments = [lesion("c-big", moved(GRID[0], (7.0, 0.0, 0.0)), volume_ml=6.0),
                 lesion("c-small", moved(GRID[0], (-7.0, 0.0, 0.0)), volume_ml=4.0)]
    links = match_lesions(timepoint(fragments, "2.2"), timepoint([parent], "1.1"), MAPPING)
    assert len(links) == 1 and links[0].status is LinkStatus.SPLIT
    assert pairs(links) == {(("c-big", "c-small"), ("p0",))}
    # The volume-weighted centroid of the fragments: 0.6 * 7 - 0.4 * 7 = 1.4 mm from the parent.
    assert links[0].distance_mm == pytest.approx(1.4)
    identity = carried_identities(links)
    assert identity["c-big"].tracking_id == "id p0 fragment 1"  # rank by volume, largest first
    assert identity["c-small"].tracking_id == "id p0 fragment 2"
    assert identity["c-big"].derived_from_uid == identity["c-small"].derived_from_uid == "p0"
    assert len({identity["c-big"].tracking_uid, identity["c-small"].tracking_uid, "p0"}) == 3


def test_merge_of_two_priors_keeps_the_uid_of_the_largest_baseline_diameter() -> None:
    priors = [lesion("p-a", GRID[0], volume_ml=5.0), lesion("p-b", np.add(GRID[0], (14.0, 0.0, 0.0)), volume_ml=4.0)]
    merged = lesion("c0", moved(GRID[0], (7.0, 0.0, 0.0)), volume_ml=9.5)
    links = match_lesions(timepoint([merged], "2.2"), timepoint(priors, "1.1"), MAPPING)
    assert [link.status for link in links] == [LinkStatus.MERGED]
    assert pairs(links) == {(("c0",), ("p-a", "p-b"))}
    # Same diameters at the prior time point: the tie goes to the smaller UID.
    assert carried_identities(links)["c0"].tracking_uid == "p-a"
    by_baseline = carried_identities(links, baseline_diameter_mm={"p-a": 12.0, "p-b": 18.0})["c0"]
    assert (by_baseline.tracking_uid, by_baseline.absorbed_uids) == ("p-b", ("p-a",))


def test_a_target_merged_with_a_larger_later_lesion_keeps_its_identity_and_is_measured_as_the_mass() -> None:
    """RECIST 1.1 appendix II: coalesced lesions are measured as the coalescent lesion. A 12 mm
    baseline target coalesces with an 18 mm lesion first seen later (new at the previous study):
    the mass carries the target's identity, so the target is measured at 48 mm (+300 %: PD), not
    counted 0 mm as merged away (which read as a target complete response). The same for a
    target and a larger non-target, and a non-target before a new lesion."""
    priors = [lesion("p-a", GRID[0], volume_ml=5.0), lesion("p-b", np.add(GRID[0], (14.0, 0.0, 0.0)), volume_ml=4.0)]
    merged = dataclasses.replace(lesion("c0", moved(GRID[0], (7.0, 0.0, 0.0)), volume_ml=9.5),
                                 longest_axial_diameter_mm=48.0)
    links = match_lesions(timepoint([merged], "2.2"), timepoint(priors, "1.1"), MAPPING)
    first_seen = {"p-a": 12.0, "p-b": 18.0}
    for categories in ({"p-a": "target", "p-b": "non_lesion"}, {"p-a": "target", "p-b": "non_target"},
                       {"p-a": "non_target", "p-b": "non_lesion"}):
        kept = carried_identities(links, first_seen, categories)["c0"]
        assert (kept.tracking_uid, kept.absorbed_uids) == ("p-a", ("p-b",)), categories
    target = dataclasses.replace(priors[0], longest_axial_diameter_mm=12.0)
    day = datetime.date(2024, 1, 1)
    identities = carried_identities(links, first_seen, {"p-a": "target", "p-b": "non_lesion"})
    (result,) = assess_series(select_targets([target], None), [
        baseline_assessment("s0", day, [target]),
        follow_up_assessment("s1", day + datetime.timedelta(days=42), links, identities)])
    assert result.sod_mm.value == 48.0 and result.target_response is TargetResponse.PD
    assert result.overall is OverallResponse.PD


def test_a_small_new_lesion_beside_a_stable_one_is_new_not_a_fragment() -> None:
    prior = [lesion("p0", GRID[0], volume_ml=10.0)]
    current = [lesion("c0", moved(GRID[0]), volume_ml=10.0), lesion("c1", moved(GRID[0], (12.0, 0.0, 0.0)), volume_ml=0.5)]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    assert {(link.status, tuple(c.tracking_uid for c in link.current)) for link in links} == {
        (LinkStatus.MATCHED, ("c0",)), (LinkStatus.NEW, ("c1",))}


def test_follow_up_lesion_outside_the_prior_scan_is_not_evaluable_as_new() -> None:
    # The prior scan covers z in [-50, 50] mm of its own frame.
    prior_extent = ImageGeometry(size=(512, 512, 40), spacing=(0.8, 0.8, 2.5), origin=(-204.4, -204.4, -48.75))
    inside, outside = (0.0, 0.0, 0.0), (0.0, 0.0, 120.0)  # prior-frame positions of two new lesions
    current = [lesion("c-in", moved(inside)), lesion("c-out", moved(outside))]
    links = match_lesions(timepoint(current, "2.2"), timepoint([], "1.1", prior_extent), MAPPING)
    result = {link.current[0].tracking_uid: (link.status, link.reason) for link in links}
    assert result == {"c-in": (LinkStatus.NEW, None), "c-out": (LinkStatus.NOT_EVALUABLE, OUTSIDE_PRIOR)}


def test_prior_lesion_outside_the_current_scan_is_not_evaluable_not_disappeared() -> None:
    # The current scan covers z in [-50, 50] mm; a position 5 mm inside its edge is within the
    # 10 mm margin, so not covered either.
    current_extent = ImageGeometry(size=(512, 512, 40), spacing=(0.8, 0.8, 2.5), origin=(-204.4, -204.4, -48.75))
    inverse = np.linalg.inv(TRANSFORM)

    def prior_position(current_point: tuple[float, float, float]) -> np.ndarray:
        return (inverse @ np.append(current_point, 1.0))[:3]

    prior = [lesion("p-in", prior_position((0.0, 0.0, 0.0))), lesion("p-edge", prior_position((60.0, 0.0, 45.0))),
             lesion("p-out", prior_position((-60.0, 0.0, 100.0)))]
    links = match_lesions(timepoint([], "2.2", current_extent), timepoint(prior, "1.1"), MAPPING)
    result = {link.prior[0].tracking_uid: (link.status, link.reason) for link in links}
    assert result == {"p-in": (LinkStatus.DISAPPEARED, None), "p-edge": (LinkStatus.NOT_EVALUABLE, OUTSIDE_CURRENT),
                      "p-out": (LinkStatus.NOT_EVALUABLE, OUTSIDE_CURRENT)}


def test_two_candidates_within_the_ambiguity_ratio_are_ambiguous_and_carry_no_identity() -> None:
    prior = [lesion("p0", GRID[0])]
    # Equal volumes: together they would double the volume, so this is no split.
    current = [lesion("c-near", moved(GRID[0], (6.0, 0.0, 0.0))), lesion("c-far", moved(GRID[0], (-7.0, 0.0, 0.0)))]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    ambiguous = by_status(links, LinkStatus.AMBIGUOUS)
    assert pairs(tuple(ambiguous)) == {(("c-near",), ("p0",))}
    assert ambiguous[0].confidence is Confidence.AMBIGUOUS and ambiguous[0].rivals == ("c-far",)
    assert carried_identities(links)["c-near"].tracking_uid == "c-near"


def test_a_rival_beyond_the_ambiguity_ratio_leaves_a_clear_match() -> None:
    prior = [lesion("p0", GRID[0])]
    # 8 / 6 = 1.33 > 1.25: the nearer one is the match.
    current = [lesion("c-near", moved(GRID[0], (6.0, 0.0, 0.0))), lesion("c-far", moved(GRID[0], (-8.0, 0.0, 0.0)))]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    assert pairs(tuple(by_status(links, LinkStatus.MATCHED))) == {(("c-near",), ("p0",))}


def test_a_pair_beyond_the_gate_or_across_location_classes_is_not_linked() -> None:
    # r = 10 mm each: gate clamp(20, 10, 30) = 20 mm.
    prior = [lesion("p-far", GRID[0]), lesion("p-lung", GRID[1], location="lung")]
    current = [lesion("c-far", moved(GRID[0], (20.5, 0.0, 0.0))), lesion("c-liver", moved(GRID[1]))]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    assert not by_status(links, LinkStatus.MATCHED)
    near = match_lesions(timepoint([lesion("c", moved(GRID[0], (19.5, 0.0, 0.0)))], "2.2"),
                         timepoint([lesion("p", GRID[0])], "1.1"), MAPPING)
    assert [link.status for link in near] == [LinkStatus.MATCHED]


def test_tracking_uid_wins_over_a_closer_lesion() -> None:
    prior = [lesion("shared", GRID[0]), lesion("p-other", GRID[2])]
    current = [lesion("shared", moved(GRID[2], (1.0, 0.0, 0.0)), source=UidSource.SEG_TRACKING_UID)]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    matched = by_status(links, LinkStatus.MATCHED)
    assert pairs(tuple(matched)) == {(("shared",), ("shared",))}
    assert (matched[0].method, matched[0].confidence) == (MatchMethod.TRACKING_UID, Confidence.HIGH)
    assert matched[0].distance_mm == pytest.approx(float(np.linalg.norm(moved(GRID[2], (1.0, 0.0, 0.0)) - moved(GRID[0]))))


def test_conceptual_volume_uid_is_named_as_the_method() -> None:
    links = match_lesions(timepoint([lesion("cv", GRID[0], source=UidSource.CONCEPTUAL_VOLUME_UID)], "1.1"),
                          timepoint([lesion("cv", GRID[0])], "1.1"))
    assert links[0].method is MatchMethod.CONCEPTUAL_VOLUME_UID


def test_normalised_name_wins_over_a_closer_lesion_within_tau_max() -> None:
    prior = [lesion("p-named", GRID[0], name="Liver met 1 BL"), lesion("p-near", np.add(GRID[0], (25.0, 0.0, 0.0)))]
    current = [lesion("c0", moved(GRID[0], (24.0, 0.0, 0.0)), name="liver_met-1 FU2")]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    matched = by_status(links, LinkStatus.MATCHED)
    assert pairs(tuple(matched)) == {(("c0",), ("p-named",))}
    assert (matched[0].method, matched[0].confidence) == (MatchMethod.NAME, Confidence.MEDIUM)


def test_a_name_match_beyond_tau_max_is_refused() -> None:
    prior = [lesion("p0", GRID[0], name="Lesion 1")]
    current = [lesion("c0", moved(GRID[0], (31.0, 0.0, 0.0)), name="lesion 1")]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    assert not by_status(links, LinkStatus.MATCHED)


def test_names_without_a_mapping_match_with_low_confidence_and_repeated_names_do_not() -> None:
    prior = [lesion("p0", GRID[0], name="Node A"), lesion("p1", GRID[1], name="dup"), lesion("p2", GRID[2], name="dup")]
    current = [lesion("c0", GRID[5], name="node a", location="liver"), lesion("c1", GRID[1], name="DUP")]
    links = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), mapping=None)
    matched = by_status(links, LinkStatus.MATCHED)
    assert pairs(tuple(matched)) == {(("c0",), ("p0",))}
    assert matched[0].confidence is Confidence.LOW and matched[0].distance_mm is None


def test_name_normalisation() -> None:
    assert normalise_name("  Liver_Met-1   BL ") == "liver met 1"
    assert normalise_name("liver met 1 FU12") == "liver met 1"
    assert normalise_name("Baseline lung nodule follow-up") == "lung nodule"
    assert normalise_name("T1") == "t1"  # target labels are kept
    assert normalise_name("BLADDER") == "bladder"  # only whole tokens go
    assert normalise_name("lesion 1 visit2", timepoint_tokens=r"visit\d+") == "lesion 1"


def test_result_does_not_depend_on_input_order() -> None:
    rng = random.Random(3)
    prior = [lesion(f"p{i}", point, volume) for i, (point, volume) in enumerate(zip(GRID, VOLUMES))]
    prior.append(lesion("p-split", (0.0, 100.0, 0.0), 10.0))
    current = [lesion(f"c{i}", moved(point, (rng.uniform(-5, 5), 0.0, 0.0)), volume)
               for i, (point, volume) in enumerate(zip(GRID, VOLUMES))]
    current += [lesion("c-f1", moved((0.0, 100.0, 0.0), (6.0, 0.0, 0.0)), 5.0),
                lesion("c-f2", moved((0.0, 100.0, 0.0), (-6.0, 0.0, 0.0)), 5.0)]
    reference = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
    for _ in range(5):
        rng.shuffle(current)
        rng.shuffle(prior)
        again = match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING)
        assert again == reference
    # Equal distances to two fragments of equal volume: the split, then the fragment ranks, are stable.
    identity = carried_identities(reference)
    assert (identity["c-f1"].tracking_id, identity["c-f2"].tracking_id) == ("id p-split fragment 1", "id p-split fragment 2")


def test_matched_lesions_carry_the_prior_identity_and_new_ones_keep_their_own() -> None:
    prior = [lesion("p0", GRID[0])]
    current = [lesion("c0", moved(GRID[0])), lesion("c-new", moved(GRID[4]))]
    identity = carried_identities(match_lesions(timepoint(current, "2.2"), timepoint(prior, "1.1"), MAPPING))
    assert (identity["c0"].tracking_uid, identity["c0"].tracking_id) == ("p0", "id p0")
    assert (identity["c-new"].tracking_uid, identity["c-new"].tracking_id) == ("c-new", "id c-new")


def test_two_lesions_with_one_tracking_uid_are_refused() -> None:
    with pytest.raises(InputError):
        match_lesions(timepoint([lesion("x", GRID[0]), lesion("x", GRID[1])], "1.1"), timepoint([], "1.1"))


def test_a_mapping_must_be_an_invertible_affine_matrix() -> None:
    with pytest.raises(ValueError):
        FrameMapping((1.0,) * 16, "not affine")
    with pytest.raises(ValueError):
        FrameMapping(tuple(np.diag([1.0, 1.0, 0.0, 1.0]).ravel().tolist()), "singular")


def test_the_longitudinal_core_imports_only_the_foundation() -> None:
    """The pipeline may call it from any role: it must not drag in imaging, scoring or outputs."""
    modules = ["change", "deltas", "frames", "groups", "identity", "links", "matching", "names", "settings", "space",
               "timepoint"]
    code = ("import sys\n" + "".join(f"import service.longitudinal.{m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('radiomics', 'grpc', 'pydicom', 'SimpleITK')"
              " or m.startswith(('service.imaging', 'service.scoring', 'service.outputs', 'service.ingest'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
