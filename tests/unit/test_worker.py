"""The study worker end to end without the network: studies in a real index, files in a real
spool, a real scorer, a real outbox; the clock driven through `process_ready(now=...)`.

Studies come from tests/support/small_study.py (4 slices of 8 x 8 CT, an RTSTRUCT whose GTV is
a square on slices 1 and 2), made into instances as the listener would (describe_instance).
The scorer is the scoring core behind a gRPC server on loopback with the real client, as in
production; `scorer` below is the one place to switch to the in-process Scorer. Deliveries
are not attempted here (test_outbox.py, test_delivery.py): these tests look at what is queued.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from service.config import Config
from service.model import Provenance
from service.observability import INGEST_REGISTRY, PRIOR_LOOKUP_OUTCOMES, STUDY_STAGES
from service.ingest.index import DONE, FAILED, RECEIVING, StudyIndex
from service.ingest.scp import describe_instance, study_order
from service.ingest.spool import Spool, study_key
from service.outputs.outbox import PENDING, Outbox
from service.priors import read_prior_report
from service.priors.selection import priors_used
from service.scoring.in_process import InProcessScorer
from service.scorer import Scorer
from service.outputs.artefacts import Artefact
from tests.support.destinations import RecordingDestination
from service.scoring.lesion import ScoringContext
from service.location import LocationRules
from service.scoring.panel import signature_panel
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from service.retention import SpoolRetention
from service.retention import remove
from service.worker import StudyWorker
from tests.support import small_study
from tests.support.processes import LOOPBACK, free_port

RECEIVED_AT = 1_000_000.0
QUIET = 30.0
HARD_CAP = 600.0

pytestmark = pytest.mark.filterwarnings("ignore:The value length")


def _default_context() -> ScoringContext:
    signature = load_signature()
    return ScoringContext(ExtractionSettings(), signature, LocationRules(), signature_panel(signature))


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    """The real scoring core, in this process (the gRPC transport has its own contract test)."""
    return InProcessScorer(_default_context())


class Site:
    """A var directory with its index, outbox and worker; `receive` stores instances as the
    listener does (file in the spool, record in the index)."""

    def __init__(self, var: Path, scorer: Scorer, **settings: object) -> None:
        self.config = Config(var_dir=var, quiet_seconds=QUIET, hard_cap_seconds=HARD_CAP, **settings)
        self.index = StudyIndex(self.config.index_path)
        self.outbox = Outbox(var / "outbox.sqlite", [RecordingDestination("pacs", Artefact.SR),
                                                     RecordingDestination("fhir", Artefact.FHIR_BUNDLE)])
        self.worker = StudyWorker(self.config, self.index, scorer, self.outbox)

    def receive(self, datasets: list[Dataset], at: float = RECEIVED_AT) -> None:
        for ds in datasets:
            path = self.config.spool_dir / f"{ds.SOPInstanceUID}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            self.index.add_instance(describe_instance(ds, path, at), study_order(ds))

    def state(self, study_uid: str) -> tuple[str, str | None]:
        study = self.index.study(study_uid)
        return study.state, study.error

    def close(self) -> None:
        self.outbox.stop()
        self.index.close()


@pytest.fixture
def site(tmp_path: Path, scorer: Scorer) -> Iterator[Site]:
    opened = Site(tmp_path / "var", scorer)
    yield opened
    opened.close()


def _rtstruct(study_uid: str) -> Dataset:
    """The small study's RTSTRUCT in its own series (as a contouring system sends it)."""
    rtstruct = small_study.rtstruct()
    rtstruct.StudyInstanceUID, rtstruct.SeriesInstanceUID = study_uid, generate_uid()
    return rtstruct


def _study(**rtstruct_changes: object) -> tuple[str, list[Dataset], Dataset]:
    """A new small study (its own Study Instance UID): CT slices and the RTSTRUCT."""
    study_uid = generate_uid()
    ct, rtstruct = small_study.ct_slices(), _rtstruct(study_uid)
    for ds in ct:
        # SliceThickness as every real CT has it: without it the SR's image library cannot be
        # built (highdicom needs it; the worker then fails the study as an internal error).
        ds.StudyInstanceUID, ds.SliceThickness = study_uid, small_study.SLICE_MM
    for keyword, value in rtstruct_changes.items():
        setattr(rtstruct, keyword, value)
    return study_uid, ct, rtstruct


def _assert_done_and_queued(site: Site, study_uid: str) -> Dataset:
    """Done, its SR, tumour-board page (PDF and Encapsulated PDF) and Bundle in the outbox
    directory, the SR and the Bundle queued; returns the SR."""
    state, error = site.state(study_uid)
    assert (state, error) == (DONE, None)
    result = site.index.study(study_uid).result
    sr_path, bundle_path = site.config.outbox_dir / f"{result}.dcm", site.config.outbox_dir / f"{result}.fhir.json"
    queued = {(d.destination, d.path, d.state, d.attempts) for d in site.outbox.deliveries()}
    assert {("pacs", sr_path, PENDING, 0), ("fhir", bundle_path, PENDING, 0)} <= queued
    assert (site.config.outbox_dir / f"{result}.summary.pdf").read_bytes().startswith(b"%PDF-")
    assert pydicom.dcmread(site.config.outbox_dir / f"{result}.summary.dicom").StudyInstanceUID == study_uid
    sr = pydicom.dcmread(sr_path)
    assert (sr.StudyInstanceUID, sr.PatientID) == (study_uid, "SMALL")
    return sr


def test_a_complete_study_is_scored_once_quiet_and_its_deliveries_queued(site: Site):
    """The small CT does not extend the early-completeness margin beyond its contours, so the
    study is ready only when nothing has arrived for the quiet period."""
    study_uid, ct, rtstruct = _study()
    site.receive([*ct, rtstruct])

    assert site.worker.process_ready(now=RECEIVED_AT + QUIET - 1) == 0
    assert site.state(study_uid) == (RECEIVING, None)
    assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
    sr = _assert_done_and_queued(site, study_uid)
    # The GTV is one lesion (the ORGAN ROI is not), contoured on this study's CT.
    evidence = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence for item in study.ReferencedSeriesSequence}
    assert {str(ds.SOPInstanceUID) for ds in [*ct, rtstruct]} >= evidence and str(rtstruct.SOPInstanceUID) in evidence
    assert len(site.outbox.deliveries()) == 2
    assert site.worker.process_ready(now=RECEIVED_AT + 2 * QUIET) == 0  # done is done


def test_a_study_without_patient_id_gets_its_sr_and_page_but_no_bundle(site: Site, caplog):
    """An empty PatientID would make the Bundle's subject match every patient of the EHR
    (service.outputs.fhir.bundle_withheld): the SR and the page go to PACS and say why there is
    no Bundle; nothing is queued for the EHR, and the log says so."""
    study_uid, ct, rtstruct = _study(PatientID="")
    for ds in ct:
        ds.PatientID = ""
    site.receive([*ct, rtstruct])
    assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
    assert site.state(study_uid) == (DONE, None)
    result = site.index.study(study_uid).result
    assert not (site.config.outbox_dir / f"{result}.fhir.json").exists()
    assert [d.destination for d in site.outbox.deliveries()] == ["pacs"]
    sr = pydicom.dcmread(site.config.outbox_dir / f"{result}.dcm")
    texts = [str(element.value) for element in sr.iterall() if element.keyword == "TextValue"]
    assert any("the study has no PatientID: no FHIR Bundle was written" in text for text in texts)
    assert "nothing sent to fhir: no FHIR Bundle was written" in caplog.text


def _stage_samples(suffix: str) -> dict[str, float]:
    return {stage: INGEST_REGISTRY.get_sample_value(f"rcds_study_stage_seconds_{suffix}", {"stage": stage}) or 0.0
            for stage in STUDY_STAGES}


def test_each_stage_of_a_scored_study_is_timed(site: Site):
    """rcds_study_stage_seconds: every stage observed for the study; the wait is the time from
    its last instance to the decision (here the quiet period, on the driven clock)."""
    counts, sums = _stage_samples("count"), _stage_samples("sum")
    study_uid, ct, rtstruct = _study()
    site.receive([*ct, rtstruct])
    assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
    _assert_done_and_queued(site, study_uid)
    added = {stage: count - counts[stage] for stage, count in _stage_samples("count").items()}
    # inputs: the series selected, the masks and crops, the key images; writing: each of 4 files;
    # restoring: only for a study whose files are gone from the spool
    assert added == {**dict.fromkeys(STUDY_STAGES, 1), "restoring": 0, "inputs": 3, "writing": 4}
    assert _stage_samples("sum")["waiting"] - sums["waiting"] == pytest.approx(QUIET)


def test_a_study_without_contours_waits_then_fails_at_the_hard_cap(site: Site):
    study_uid, ct, rtstruct = _study()
    site.receive(ct)

    assert site.worker.process_ready(now=RECEIVED_AT + QUIET + 1) == 0
    assert site.state(study_uid) == (RECEIVING, None)
    assert site.outbox.deliveries() == []

    site.worker.process_ready(now=RECEIVED_AT + HARD_CAP + 1)
    assert site.state(study_uid) == (FAILED, f"no RTSTRUCT or SEG received within {HARD_CAP:g} s")


def test_a_failed_study_another_worker_thread_claimed_first_is_left_to_it(site: Site, monkeypatch):
    """Two study threads assess the same study at its hard cap; the one whose claim loses skips
    it (no error, no deadline from it). The lost claim is forced (a race two real threads win or
    lose by chance)."""
    study_uid, ct, _ = _study()
    site.receive(ct)
    monkeypatch.setattr(site.index, "claim", lambda uid: False)

    assert site.worker.process_ready(now=RECEIVED_AT + HARD_CAP + 1) == 0
    assert site.state(study_uid) == (RECEIVING, None)  # the thread that claimed it fails it


def test_a_waiting_study_is_scored_once_its_contours_arrive(site: Site):
    study_uid, ct, rtstruct = _study()
    site.receive(ct)
    assert site.worker.process_ready(now=RECEIVED_AT + 5) == 0
    site.receive([rtstruct], at=RECEIVED_AT + 10)
    assert site.worker.process_ready(now=RECEIVED_AT + 10 + QUIET) == 1
    _assert_done_and_queued(site, study_uid)


def test_a_study_with_bad_input_fails_with_its_reason_and_the_next_is_still_scored(site: Site):
    """Contours in a Frame of Reference that is not the CT's: that study fails saying so; the
    other study, received at the same time, is scored in the same cycle."""
    bad_uid, bad_ct, bad_rtstruct = _study()
    other_frame = generate_uid()
    bad_rtstruct.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = other_frame
    for roi in bad_rtstruct.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = other_frame
    good_uid, good_ct, good_rtstruct = _study()
    site.receive([*bad_ct, bad_rtstruct, *good_ct, good_rtstruct])

    site.worker.process_ready(now=RECEIVED_AT + QUIET + 1)
    state, reason = site.state(bad_uid)
    assert state == FAILED and "frame of reference" in reason.lower(), reason
    assert other_frame not in reason and "uid:" not in reason, reason  # `status` prints it: no UID went in
    _assert_done_and_queued(site, good_uid)
    assert {d.path.name.removesuffix(".dcm").removesuffix(".fhir.json") for d in site.outbox.deliveries()} == {
        site.index.study(good_uid).result}


def test_a_study_whose_spooled_files_are_gone_fails_saying_so_as_ours(site: Site):
    """Two of its files removed from the spool (by hand, say) before the study is scored: it
    fails as an internal failure (not the sender's data) saying what is missing and what to do,
    not that a CT image "cannot be read as DICOM"."""
    def internal_failures() -> float:
        return INGEST_REGISTRY.get_sample_value("rcds_studies_failed_total", {"kind": "internal"}) or 0.0

    failed_before = internal_failures()
    study_uid, ct, rtstruct = _study()
    site.receive([*ct, rtstruct])
    for record in site.index.instances(study_uid)[:2]:
        record.path.unlink()

    assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
    assert site.state(study_uid) == (
        FAILED, "2 of its 5 received instances are no longer in the spool: send the study again, then rescore it")
    assert internal_failures() == failed_before + 1
    assert site.outbox.deliveries() == []


def _late_rtstruct_after_retention(site: Site) -> tuple[str, float]:
    """A study done long ago whose spooled instances spool retention removed; then a corrected
    RTSTRUCT arrives and the study is assessed again. Its UID, and when retention removed them."""
    study_uid, ct, rtstruct = _study()
    site.receive([*ct, rtstruct])
    assert site.index.claim(study_uid) and site.index.finish(study_uid, DONE, result=generate_uid())
    retention = SpoolRetention(dataclasses.replace(site.config, spool_retention_days=30), site.index,
                               Spool(site.config.spool_dir), site.outbox)
    assert retention.sweep(now=time.time() + 31 * 86400).studies == 1
    removed_at = site.index.study(study_uid).files_removed_at
    site.receive([_rtstruct(study_uid)], at=time.time())
    assert site.index.study(study_uid).state == RECEIVING
    assert site.worker.process_ready(now=time.time() + QUIET) == 1
    return study_uid, removed_at


def test_a_late_rtstruct_for_a_study_whose_files_retention_removed_fails_naming_retention(site: Site):
    """Without a prior source that retrieves images, the study fails as ours, saying that
    retention removed the other instances, on which day, and what to do, rather than that files
    vanished."""
    study_uid, removed_at = _late_rtstruct_after_retention(site)
    day = time.strftime("%Y-%m-%d", time.gmtime(removed_at))
    assert site.state(study_uid) == (
        FAILED, f"5 of its 6 received instances were removed from the spool by retention on {day} UTC "
        "(spool_retention_days): send the study again, then rescore it")


def test_a_late_rtstruct_for_a_removed_study_whose_pacs_does_not_answer_waits_then_fails_saying_both(
        tmp_path, scorer, monkeypatch):
    """As above, with a prior source that retrieves images (DIMSE C-GET) from a PACS that is not
    there (a closed port: a real refusal): the worker asks it for the removed instances, and the
    study waits to be asked about again, as for an unavailable scorer (the schedule shortened
    here to one wait, longer than the quiet period); then it fails naming retention, what PACS
    answered, and what to do."""
    wait = QUIET + 60
    monkeypatch.setattr("service.worker.PEER_RETRY_WAITS_S", (wait,))
    site = Site(tmp_path / "var", scorer, **PRIORS)
    try:
        study_uid, _ = _late_rtstruct_after_retention(site)
        state, reason = site.state(study_uid)
        assert state == RECEIVING and reason is not None
        assert reason.startswith("putting its instances missing from the spool back from PACS failed (dimse: DIMSE: "
                                 "no association with PACS at "), reason
        assert reason.endswith(f"); retried in {wait:g} s"), reason
        assert site.worker.process_ready(now=time.time() + QUIET + 5) == 0  # ready, but not before its wait

        assert site.worker.process_ready(now=time.time() + wait + 1) == 1
        state, reason = site.state(study_uid)
        assert state == FAILED and reason is not None
        assert reason.startswith("5 of its 6 received instances were removed from the spool by retention on "), reason
        assert " UTC (spool_retention_days), and putting them back from PACS failed (dimse: " in reason, reason
        assert reason.endswith("): send the study again, then rescore it"), reason
        assert site.index.study(study_uid).files_removed_at is not None
        assert not list((site.config.var_dir / "retrieved").glob("restore-*"))
    finally:
        site.close()


def test_a_late_rtstruct_for_a_removed_study_indexed_outside_the_spool_fails_at_once(tmp_path, scorer):
    """Its index lists files outside the spool directory (a var directory restored elsewhere):
    nothing can be put back there, now or later, so the study fails at once (no wait, PACS not
    asked: PRIORS' closed port would otherwise say so), naming the reason."""
    site = Site(tmp_path / "var", scorer, **PRIORS)
    try:
        site.config = dataclasses.replace(site.config, var_dir=tmp_path / "old-var")  # where the index points
        study_uid, _ = _late_rtstruct_after_retention(site)
        state, reason = site.state(study_uid)
        assert state == FAILED and reason is not None
        assert (" UTC (spool_retention_days), and putting them back from PACS failed (the index places 5 of them "
                "outside the spool directory): send the study again, then rescore it") in reason, reason
    finally:
        site.close()


def test_instances_arriving_during_scoring_make_it_score_again(site: Site, scorer: Scorer):
    """A second RTSTRUCT arrives while the first scoring runs (received from inside the scorer
    call, where a real arrival would land): that result is dropped before anyone received it,
    and the next cycle scores the study again with everything received: of two structure sets,
    the pipeline scores the last received, the late one."""
    study_uid, ct, rtstruct = _study()
    late = _rtstruct(study_uid)
    site.receive([*ct, rtstruct])

    class ArrivingWhileScoring:
        """The real scorer; its first score_study() (the study's one lesion, in one call) also
        stores the late instance (describe() is asked before scoring too: the worker derives its
        completeness margin from it)."""

        def __getattr__(self, name: str):
            return getattr(scorer, name)

        def score_study(self, crops):
            if not arrived:
                arrived.append(True)
                site.receive([late], at=RECEIVED_AT + 2)
            return scorer.score_study(crops)

    arrived: list[bool] = []
    site.worker = StudyWorker(site.config, site.index, ArrivingWhileScoring(), site.outbox)
    site.worker.process_ready(now=RECEIVED_AT + QUIET)
    assert arrived == [True]
    assert site.state(study_uid) == (RECEIVING, None)
    assert site.outbox.deliveries() == [] and list(site.config.outbox_dir.glob("*")) == []

    assert site.worker.process_ready(now=RECEIVED_AT + 2 + QUIET) == 1
    sr = _assert_done_and_queued(site, study_uid)
    evidence = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence for item in study.ReferencedSeriesSequence}
    assert str(late.SOPInstanceUID) in evidence and str(rtstruct.SOPInstanceUID) not in evidence


# Priors on, from a PACS that is not there (nothing listens on the port): the studies are scored
# all the same ("priors unavailable"), which is all these tests need of it; what they look at is
# which study the worker scores when.
PRIORS = {"prior_providers": ("dimse",), "prior_dimse_host": LOOPBACK, "prior_dimse_port": free_port(),
          "prior_timeout_seconds": 5.0}
WAIT = 300.0


def _dated_study(date: str, issuer: str = "HOSP") -> tuple[str, list[Dataset], Dataset]:
    """A small study of patient SMALL (issuer `issuer`) on `date`."""
    study_uid, ct, rtstruct = _study()
    for ds in [*ct, rtstruct]:
        ds.StudyDate, ds.StudyTime, ds.IssuerOfPatientID = date, "100000", issuer
    return study_uid, ct, rtstruct


def test_a_follow_up_waits_for_the_patients_earlier_study_until_its_report_is_delivered(tmp_path, scorer):
    """Follow-up complete first, baseline still arriving: the follow-up is held while the
    baseline is received, scored and its SR waits for PACS, then scored. The wait lives in the
    index and the outbox only: a restart while waiting holds the follow-up just the same."""
    base_uid, base_ct, base_rtstruct = _dated_study("20240101")
    follow_uid, follow_ct, follow_rtstruct = _dated_study("20240301")
    site = Site(tmp_path / "var", scorer, prior_in_flight_wait_seconds=WAIT, **PRIORS)
    try:
        site.receive([*follow_ct, follow_rtstruct])
        site.receive(base_ct)  # its contours still to come
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 0
        site.close()

        site = Site(tmp_path / "var", scorer, prior_in_flight_wait_seconds=WAIT, **PRIORS)  # restarted
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET + 1) == 0
        assert site.state(follow_uid) == (RECEIVING, None)
        site.receive([base_rtstruct], at=RECEIVED_AT + QUIET)
        assert site.worker.process_ready(now=RECEIVED_AT + 2 * QUIET) == 1
        assert site.state(base_uid)[0] == DONE and site.state(follow_uid)[0] == RECEIVING  # its SR not in PACS yet

        assert site.outbox.deliver_due() == 2  # the baseline's SR and Bundle
        assert site.worker.process_ready(now=RECEIVED_AT + 2 * QUIET) == 1
        assert site.state(follow_uid)[0] == DONE
    finally:
        site.close()


def test_the_wait_for_an_earlier_study_is_bounded(tmp_path, scorer):
    """A baseline that never completes (its contours never come) holds its follow-up only for
    prior_in_flight_wait_seconds after the follow-up's last instance."""
    _, base_ct, _ = _dated_study("20240101")
    follow_uid, follow_ct, follow_rtstruct = _dated_study("20240301")
    site = Site(tmp_path / "var", scorer, prior_in_flight_wait_seconds=WAIT, **PRIORS)
    try:
        site.receive([*base_ct, *follow_ct, follow_rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + WAIT - 1) == 0
        assert site.worker.process_ready(now=RECEIVED_AT + WAIT) == 1
        assert site.state(follow_uid)[0] == DONE
    finally:
        site.close()


@pytest.mark.parametrize("case", ["another patient", "a later study", "priors off"])
def test_a_study_does_not_wait_for_what_is_not_its_earlier_study(tmp_path, scorer, case):
    other_date, issuer, settings = {
        "another patient": ("20240101", "OTHER HOSPITAL", PRIORS),  # same PatientID, another issuer
        "a later study": ("20240601", "HOSP", PRIORS),
        "priors off": ("20240101", "HOSP", {}),
    }[case]
    _, other_ct, _ = _dated_study(other_date, issuer)
    follow_uid, follow_ct, follow_rtstruct = _dated_study("20240301")
    site = Site(tmp_path / "var", scorer, prior_in_flight_wait_seconds=WAIT, **settings)
    try:
        site.receive([*other_ct, *follow_ct, follow_rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        assert site.state(follow_uid)[0] == DONE
    finally:
        site.close()


def _lookups() -> dict[str, float]:
    """rcds_prior_lookups_total by outcome, and (as "timed") rcds_prior_lookup_seconds' count."""
    counts = {outcome: INGEST_REGISTRY.get_sample_value("rcds_prior_lookups_total", {"outcome": outcome}) or 0.0
              for outcome in PRIOR_LOOKUP_OUTCOMES}
    return {**counts, "timed": INGEST_REGISTRY.get_sample_value("rcds_prior_lookup_seconds_count") or 0.0}


def _added(before: dict[str, float]) -> dict[str, float]:
    """What each of _lookups() gained since `before`, those that gained something."""
    return {name: value - before[name] for name, value in _lookups().items() if value != before[name]}


def test_prior_lookups_are_counted_by_outcome_and_timed_when_a_source_was_asked(tmp_path, scorer):
    """The directory source over the site's own outbox (serve on a single node): the baseline's
    lookup finds none, the follow-up's finds the baseline's SR; a study without a study date asks
    no source, so its lookup is counted but not timed."""
    var = tmp_path / "var"
    (var / "outbox").mkdir(parents=True)  # as the ingest makes it at its start
    site = Site(var, scorer, prior_providers=("directory",), prior_directory=var / "outbox")
    try:
        base_uid, base_ct, base_rtstruct = _dated_study("20240101")
        before = _lookups()
        site.receive([*base_ct, base_rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        assert _added(before) == {"none": 1, "timed": 1}

        assert site.outbox.deliver_due() == 2  # its SR delivered: the follow-up need not wait for it
        follow_uid, follow_ct, follow_rtstruct = _dated_study("20240301")
        before = _lookups()
        site.receive([*follow_ct, follow_rtstruct], at=RECEIVED_AT + QUIET)
        assert site.worker.process_ready(now=RECEIVED_AT + 2 * QUIET) == 1
        assert _added(before) == {"found": 1, "timed": 1}
        assert site.index.study(base_uid).result in priors_used(_assert_done_and_queued(site, follow_uid))

        undated_uid, undated_ct, undated_rtstruct = _study()
        before = _lookups()
        site.receive([*undated_ct, undated_rtstruct], at=RECEIVED_AT + 2 * QUIET)
        assert site.worker.process_ready(now=RECEIVED_AT + 3 * QUIET) == 1
        assert site.state(undated_uid)[0] == DONE
        assert _added(before) == {"not_looked_up": 1}
    finally:
        site.close()


def test_a_lookup_no_source_answered_is_counted_and_its_study_named_and_one_that_raised_too(
        tmp_path, scorer, caplog, monkeypatch):
    """A PACS that refuses connections (a closed port): counted unavailable, timed, and the study
    named in the log as scored again once PACS answers. A lookup that raises (a
    full disk under the prior cache: FAKED by making it raise OSError) is counted as an error,
    and its study fails as ours."""
    site = Site(tmp_path / "var", scorer, **PRIORS)
    try:
        study_uid, ct, rtstruct = _dated_study("20240101")
        before = _lookups()
        site.receive([*ct, rtstruct])
        with caplog.at_level(logging.WARNING, logger="service.worker"):
            assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        assert site.state(study_uid) == (DONE, None)
        assert _added(before) == {"unavailable": 1, "timed": 1}
        key = study_key(study_uid)
        assert (f"study {key}: priors unavailable, compared with none; scored again by itself once a prior source "
                f"answers (within prior_retry_hours; then `radiomics-cds rescore {key}`)") in caplog.messages

        def full_disk(*_: object, **__: object) -> None:
            raise OSError(28, "No space left on device")
        monkeypatch.setattr("service.worker.resolve_priors", full_disk)
        assert site.outbox.deliver_due() == 2  # the first study's SR delivered: the next need not wait for it
        failed_uid, ct, rtstruct = _dated_study("20240201")
        before = _lookups()
        site.receive([*ct, rtstruct], at=RECEIVED_AT + QUIET)
        assert site.worker.process_ready(now=RECEIVED_AT + 2 * QUIET) == 1
        assert site.state(failed_uid)[0] == FAILED
        assert _added(before) == {"error": 1, "timed": 1}
    finally:
        site.close()


class _NewerScorer(InProcessScorer):
    """A scorer of a later release (a rolling upgrade) stating a setting value this release
    cannot read; scoring itself is the real in-process scorer."""

    def describe(self) -> Provenance:
        stated = super().describe()
        return dataclasses.replace(stated, settings={**stated.settings, "interpolator": "sitkFutureKernel"})


def test_settings_a_newer_scorer_states_do_not_stop_the_worker(tmp_path: Path):
    """Early completeness falls back to the flat margin and the study is assessed and taken
    after its quiet period (before, every cycle failed before assessing any study, all studies
    stayed receiving). Its outputs cannot state settings this release does not know, so it then
    fails, visibly in status, rather than waiting for ever."""
    opened = Site(tmp_path / "var", _NewerScorer(_default_context()))
    try:
        study_uid, ct, rtstruct = _study()
        opened.receive([*ct, rtstruct])
        assert opened.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        state, error = opened.state(study_uid)
        assert state is FAILED and error is not None and "ConfigError" in error
    finally:
        opened.close()


def _rescore(var_dir: Path, *arguments: str) -> str:
    """`radiomics-cds rescore` run as an operator runs it, beside the worker's open index; its output."""
    done = subprocess.run([sys.executable, "-m", "service.cli", "rescore", *arguments], capture_output=True, text=True,
                          env={**os.environ, "RCDS_VAR_DIR": str(var_dir)}, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout


def test_a_failed_study_sent_back_by_rescore_is_scored_by_the_worker(tmp_path: Path, scorer: Scorer):
    """A study failed by a scorer release this one cannot describe (_NewerScorer); the scorer
    rolled back, `rescore --failed` sends it back, and the next cycle after its quiet period (it
    counts from the rescore) scores it: done, its outputs queued, a single attempt counted."""
    site = Site(tmp_path / "var", _NewerScorer(_default_context()))
    try:
        study_uid, ct, rtstruct = _study()
        site.receive([*ct, rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        assert site.state(study_uid)[0] == FAILED

        site.worker = StudyWorker(site.config, site.index, scorer, site.outbox)  # the scorer fixed
        sent_back = time.time()
        assert _rescore(site.config.var_dir, "--failed").endswith("queued to be scored again (was failed)\n")
        assert site.worker.process_ready(now=sent_back + QUIET - 1) == 0
        assert site.worker.process_ready(now=time.time() + QUIET) == 1
        _assert_done_and_queued(site, study_uid)
        assert site.index.study(study_uid).attempts == 1
    finally:
        site.close()


class _FixedRelease(InProcessScorer):
    """The same scoring core, describing itself as a later release (a bug fixed since): its SR
    of a study is another document than this release's."""

    def describe(self) -> Provenance:
        stated = super().describe()
        return dataclasses.replace(stated, algorithm_version=f"{stated.algorithm_version}+fixed")


def test_a_done_study_sent_back_by_rescore_gets_an_sr_naming_the_earlier_one(site: Site):
    """Scored, then sent back by key once the fixed release runs: the new SR names the SR it
    replaces as predecessor (as reconciliation's re-scoring does), and is queued for delivery."""
    study_uid, ct, rtstruct = _study()
    site.receive([*ct, rtstruct])
    assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
    earlier = site.index.study(study_uid).result

    site.worker = StudyWorker(site.config, site.index, _FixedRelease(_default_context()), site.outbox)
    assert _rescore(site.config.var_dir, study_key(study_uid)).endswith("queued to be scored again (was done)\n")
    assert site.worker.process_ready(now=time.time() + QUIET) == 1
    sr = _assert_done_and_queued(site, study_uid)
    assert sr.SOPInstanceUID != earlier
    replaced = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert replaced.ReferencedSOPInstanceUID == earlier


def test_reconciliation_asks_a_pacs_that_does_not_answer_less_and_less_often(tmp_path, scorer, caplog, monkeypatch):
    """The PACS of the priors refuses connections (a real refusal: a closed port): the delivered
    study's reconciliation is postponed 60 s, then 120 s, doubling (not once a minute for ever,
    a WARNING each time). An unexpected error (a full disk under the prior cache: FAKED here by
    making the lookup raise OSError, no disk fills on cue) postpones it the same way instead of
    asking again at every cycle."""
    study_uid, ct, rtstruct = _dated_study("20240101")
    site = Site(tmp_path / "var", scorer, **PRIORS)
    try:
        site.receive([*ct, rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        assert site.outbox.deliver_due() == 2
        start = time.time()

        def postponements(at: float) -> int:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="service.worker"):
                site.worker.reconcile_delivered(now=at)
            return sum("reconciliation postponed" in r.getMessage() for r in caplog.records)

        assert [postponements(start + offset) for offset in (0, 59, 61, 61 + 119, 61 + 121)] == [1, 0, 1, 0, 1]

        def full_disk(*_: object, **__: object) -> None:
            raise OSError(28, "No space left on device")
        monkeypatch.setattr("service.worker.stale_later_studies", full_disk)
        later = start + 61 + 121 + 241
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="service.worker"):
            site.worker.reconcile_delivered(now=later)
            site.worker.reconcile_delivered(now=later + 1)  # postponed: not asked again at once
        assert sum("reconciliation of a study failed" in r.getMessage() for r in caplog.records) == 1
    finally:
        site.close()


@pytest.mark.parametrize("case", ["no source answers", "the source answers, no prior", "priors off"])
def test_a_study_scored_while_no_prior_source_answers_is_marked_in_the_index(tmp_path, scorer, case):
    """The PACS of PRIORS refuses connections (a closed port): the study is scored all the same
    and marked, with the moment. A source that answers (a directory archive, empty) or priors
    off leave it unmarked."""
    archive = tmp_path / "archive"
    archive.mkdir()
    settings = {"no source answers": PRIORS, "priors off": {},
                "the source answers, no prior": {"prior_providers": ("directory",), "prior_directory": archive}}[case]
    site = Site(tmp_path / "var", scorer, **settings)
    try:
        study_uid, ct, rtstruct = _dated_study("20240301")
        site.receive([*ct, rtstruct])
        before = time.time()
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        sr = _assert_done_and_queued(site, study_uid)
        since = site.index.study(study_uid).priors_unavailable_since
        notes = read_prior_report(sr).notes
        if case == "no source answers":
            assert since is not None and before <= since <= time.time()
            assert [n for n in notes if n.startswith("priors unavailable: dimse: ")], notes
            assert [s.study_instance_uid for s in site.index.scored_without_priors()] == [study_uid]
        else:
            assert since is None and not [n for n in notes if n.startswith("priors unavailable")]
            assert site.index.scored_without_priors() == []
    finally:
        site.close()


@pytest.mark.parametrize("retrieving", [False, True], ids=["no-source-retrieves", "pacs-not-there"])
def test_a_later_study_whose_spool_retention_removed_is_not_scored_again_for_a_late_baseline(
        tmp_path, scorer, caplog, retrieving):
    """The follow-up is scored first, its report in the archive; retention then removes its
    spooled instances. When the baseline, scored later, is reconciled, the follow-up did not
    compare with it, but its instances cannot be had now: no source retrieves images (the log
    says to send it again), or the one that does (DIMSE C-GET) is a PACS that is not there (a
    closed port: reconciliation is postponed, to ask again after its backoff). Scoring it again
    would fail it for want of them: it stays done with its result. (Retrieved from a real PACS,
    it is compared: tests/integration.)"""
    dimse = {"also": ("dimse",), "prior_dimse_host": LOOPBACK, "prior_dimse_port": free_port(),
             "prior_timeout_seconds": 5.0} if retrieving else {}
    site, archive = _archive_site(tmp_path, scorer, **dimse)
    try:
        archive.mkdir()
        base_uid, base_ct, base_rtstruct = _dated_study("20240101")
        follow_uid, follow_ct, follow_rtstruct = _dated_study("20240301")
        site.receive([*follow_ct, follow_rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        follow_up = _assert_done_and_queued(site, follow_uid)
        shutil.copy(site.config.outbox_dir / f"{follow_up.SOPInstanceUID}.dcm", archive)
        assert remove(site.index, Spool(site.config.spool_dir), site.index.study(follow_uid), time.time() + 1)

        site.receive([*base_ct, base_rtstruct], at=RECEIVED_AT + QUIET)
        assert site.worker.process_ready(now=RECEIVED_AT + 2 * QUIET) == 1
        baseline = _assert_done_and_queued(site, base_uid)
        shutil.copy(site.config.outbox_dir / f"{baseline.SOPInstanceUID}.dcm", archive)
        site.outbox.deliver_due(time.time() + 10**9)
        with caplog.at_level(logging.WARNING, logger="service.worker"):
            assert site.worker.reconcile_delivered(now=time.time()) == 0
        assert site.state(follow_uid) == (DONE, None)
        assert site.index.study(follow_uid).result == follow_up.SOPInstanceUID
        if retrieving:  # PACS could not be asked: reconciliation asks again after its backoff
            assert [message for message in caplog.messages if message.startswith(
                f"study {study_key(follow_uid)}: putting its instances missing from the spool back from PACS failed, "
                "trying again later: dimse: DIMSE: no association with PACS at ")], caplog.messages
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="service.worker"):
                site.worker.reconcile_delivered(now=time.time() + 1)
            assert not [message for message in caplog.messages if "putting its instances" in message]  # backoff
        else:
            assert (f"study {study_key(follow_uid)}: an earlier study's report arrived after it, but spool retention "
                    "has removed its instances; send it again to have it compared") in caplog.messages
    finally:
        site.close()


def _archive_site(tmp_path: Path, scorer: Scorer, *, also: tuple[str, ...] = (), **settings: object) -> tuple[Site, Path]:
    """A site whose prior source is a directory archive (`directory`, asked as PACS is asked),
    not there yet, then the sources `also` names. Moved away, the source fails as a PACS that is
    down does ("priors unavailable"); moved back, it answers."""
    archive = tmp_path / "archive"
    return Site(tmp_path / "var", scorer, prior_providers=("directory", *also), prior_directory=archive,
                **settings), archive


def _retries(site: Site, caplog: pytest.LogCaptureFixture, at: float) -> tuple[int, list[str]]:
    """One retry pass at `at`: how many studies it sent back, and what it logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="service.prior_retry"):
        sent_back = site.worker.retry_without_priors(now=at)
    return sent_back, [record.getMessage() for record in caplog.records if record.name == "service.prior_retry"]


@pytest.mark.parametrize("first_wait", [None, 10.0], ids=["a-minute-by-default", "configured"])
def test_a_study_scored_without_its_priors_is_scored_again_with_them_once_the_source_answers(
        tmp_path, scorer, caplog, first_wait):
    """The baseline is scored and its SR put in the archive; the archive goes away and the
    follow-up is scored without it. It is asked about a minute later (or
    pacs_query_initial_backoff_seconds), then after twice, four times that (not in between),
    left done and marked while the source fails; once the archive is back, the next question
    sends it back, and the worker scores it again: compared with the baseline's SR, its RECIST
    assessment there, the old SR named as predecessor, unmarked."""
    settings = {} if first_wait is None else {"pacs_query_initial_backoff_seconds": first_wait}
    wait = first_wait or 60.0
    site, archive = _archive_site(tmp_path, scorer, **settings)
    try:
        base_uid, base_ct, base_rtstruct = _dated_study("20240101")
        follow_uid, follow_ct, follow_rtstruct = _dated_study("20240301")
        archive.mkdir()
        site.receive([*base_ct, base_rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        baseline = _assert_done_and_queued(site, base_uid)
        assert site.index.scored_without_priors() == []  # the archive answered: no prior
        shutil.copy(site.config.outbox_dir / f"{baseline.SOPInstanceUID}.dcm", archive)  # in "PACS"
        assert site.outbox.deliver_due() == 2

        archive.rename(tmp_path / "away")
        site.receive([*follow_ct, follow_rtstruct], at=RECEIVED_AT + QUIET)
        assert site.worker.process_ready(now=RECEIVED_AT + 2 * QUIET) == 1
        first = _assert_done_and_queued(site, follow_uid)
        assert priors_used(first) == set() and "RECIST 1.1 assessment" not in _measurement_groups(first)
        start, lookups_before = time.time(), _lookups()
        after_first, after_second = wait + 1, wait + 1 + 2 * wait + 1  # just after each of the first two waits
        asked = [_retries(site, caplog, start + offset)
                 for offset in (0, wait - 1, after_first, after_second - 2, after_second)]
        assert [sent_back for sent_back, _ in asked] == [0] * 5
        assert [len(messages) for _, messages in asked] == [0, 0, 1, 0, 1]
        assert asked[4][1] == [
            f"study {study_key(follow_uid)}: its priors are still unavailable; asked again in {4 * wait:.0f} s"]
        assert site.state(follow_uid) == (DONE, None) and site.index.study(follow_uid).result == first.SOPInstanceUID

        (tmp_path / "away").rename(archive)
        assert _retries(site, caplog, start + after_second + 4 * wait - 1) == (0, [])
        assert _retries(site, caplog, start + after_second + 4 * wait + 1) == (
            1, [f"study {study_key(follow_uid)}: scored again, its priors are available now"])
        assert site.state(follow_uid) == (RECEIVING, "scored again: its priors are available now")
        assert _added(lookups_before) == {}  # the questions are not a scored study's lookups
        assert site.worker.process_ready(now=time.time() + QUIET) == 1
        assert _added(lookups_before) == {"found": 1, "timed": 1}
        again = _assert_done_and_queued(site, follow_uid)
        assert site.index.scored_without_priors() == [] and site.index.study(follow_uid).priors_unavailable_since is None
        assert priors_used(again) == {baseline.SOPInstanceUID}
        assert "RECIST 1.1 assessment" in _measurement_groups(again)
        assert not [note for note in read_prior_report(again).notes if note.startswith("priors unavailable")]
        replaced = again.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert replaced.ReferencedSOPInstanceUID == first.SOPInstanceUID
        assert [lesion.tracking_uid for lesion in read_prior_report(again).lesions] == [
            lesion.tracking_uid for lesion in read_prior_report(baseline).lesions]
    finally:
        site.close()


def _measurement_groups(sr: Dataset) -> list[str]:
    """The tracking identifiers of the SR's image measurement groups (RECIST's is one)."""
    report = hd.sr.Comprehensive3DSR.from_dataset(sr, copy=True).content
    return [str(group.tracking_identifier) for group in report.get_image_measurement_groups()]


def test_with_prior_retry_hours_0_a_study_without_its_priors_is_marked_never_asked_about_again(
        tmp_path, scorer, caplog):
    """prior_retry_hours 0: the study is marked (for `status` and `rescore --priors-unavailable`),
    the log says to rescore it, and no retry asks about it or logs that it gave up."""
    site, archive = _archive_site(tmp_path, scorer, prior_retry_hours=0)
    try:
        study_uid, ct, rtstruct = _dated_study("20240301")
        site.receive([*ct, rtstruct])
        with caplog.at_level(logging.WARNING, logger="service.worker"):
            assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        key = study_key(study_uid)
        assert (f"study {key}: priors unavailable, compared with none; once a prior source answers, "
                f"`radiomics-cds rescore {key}` compares it") in caplog.messages
        since = site.index.study(study_uid).priors_unavailable_since
        assert since is not None
        archive.mkdir()
        assert [_retries(site, caplog, since + offset) for offset in (0, 61, 3600)] == [(0, [])] * 3
        assert [s.study_instance_uid for s in site.index.scored_without_priors()] == [study_uid]
    finally:
        site.close()


def test_a_study_whose_priors_stay_unavailable_is_left_marked_after_prior_retry_hours(tmp_path, scorer, caplog):
    """prior_retry_hours 1: asked about within the hour; from its first result without priors
    plus an hour on, never again, even once the source would answer, which is logged once
    (WARNING); the study stays done and marked. The operator's `rescore --priors-unavailable`
    has the worker score it again: while the source still fails, it is marked as before (the
    same moment: not asked about again, logged again once); once it answers, unmarked."""
    site, archive = _archive_site(tmp_path, scorer, prior_retry_hours=1)
    try:
        study_uid, ct, rtstruct = _dated_study("20240301")
        site.receive([*ct, rtstruct])
        assert site.worker.process_ready(now=RECEIVED_AT + QUIET) == 1
        since = site.index.study(study_uid).priors_unavailable_since
        assert since is not None
        assert _retries(site, caplog, since)[1] == []  # scheduled
        assert _retries(site, caplog, since + 3599)[1] == [
            f"study {study_key(study_uid)}: its priors are still unavailable; asked again in 120 s"]
        gave_up = (f"study {study_key(study_uid)}: its priors still unavailable 1 h after it was scored without them; "
                   "no longer asked about (radiomics-cds rescore --priors-unavailable once a prior source answers)")
        assert _retries(site, caplog, since + 3600) == (0, [gave_up])
        assert caplog.records[0].levelno == logging.WARNING
        assert _retries(site, caplog, since + 7 * 3600) == (0, [])
        assert site.state(study_uid) == (DONE, None)
        assert [s.study_instance_uid for s in site.index.scored_without_priors()] == [study_uid]

        assert _rescore(site.config.var_dir, "--priors-unavailable").endswith("queued to be scored again (was done)\n")
        assert _retries(site, caplog, since + 7 * 3600) == (0, [])  # receiving: nothing to ask about
        assert site.worker.process_ready(now=time.time() + QUIET) == 1
        assert site.index.study(study_uid).priors_unavailable_since == since
        assert _retries(site, caplog, since + 8 * 3600) == (0, [gave_up])
        archive.mkdir()
        assert _retries(site, caplog, since + 9 * 3600) == (0, [])
        assert _rescore(site.config.var_dir, "--priors-unavailable").endswith("queued to be scored again (was done)\n")
        assert site.worker.process_ready(now=time.time() + QUIET) == 1
        _assert_done_and_queued(site, study_uid)
        assert site.index.scored_without_priors() == []
    finally:
        site.close()
