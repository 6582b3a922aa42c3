"""Retrieval faults that Orthanc (tests/integration/test_retrieval.py) cannot produce: a PACS
answering a C-GET with an instance that was not asked for (a pynetdicom C-GET SCP scripted to do
so), a full disk while an instance is written, a prior CT that cannot be had reaching the
follow-up's note (service.prior_frames), and the C-GET's received files in a process whose
listener receives to disk (service.ingest.receive)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage
from pynetdicom import AE, _config, dimse_messages, evt
from pynetdicom.transport import ThreadedAssociationServer

from service.errors import PriorSourceError
from service.imaging.volume import load_ct_series
from service.ingest.receive import ReceiveDirectory
from service.observability import uid_token
from service.prior_frames import NO_REGISTRATION, FrameSources, prior_mapping
from service.priors.dimse import DimseProvider, StudyRootQueryRetrieveInformationModelGet
from service.priors.reading import PriorReport
from service.priors.retrieve import Landing, RetrievalLimits, SeriesRequest, evidence_requests, retrieve_series
from tests.support.processes import LOOPBACK, wait_until
from tests.support.small_study import SERIES_UID, STUDY_UID, ct_slices

OTHER_SERIES = "1.2.826.0.1.3680043.8.498.99"


@pytest.fixture
def wrong_series_pacs() -> Iterator[ThreadedAssociationServer]:
    """A C-GET SCP that answers every request with the small study's CT (series SERIES_UID)."""
    slices = ct_slices()

    def handle_get(event: evt.Event) -> Iterator[int | tuple[int, Dataset]]:
        yield len(slices)
        for ds in slices:
            yield 0xFF00, ds

    ae = AE(ae_title="WRONG")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(CTImageStorage, scu_role=False, scp_role=True)
    server = ae.start_server((LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_GET, handle_get)])
    yield server
    server.shutdown()


def test_an_instance_that_was_not_asked_for_fails_the_retrieval(wrong_series_pacs, tmp_path):
    provider = DimseProvider(LOOPBACK, wrong_series_pacs.server_address[1], "WRONG", "RADIOMICS_CDS", 10.0)
    with pytest.raises(PriorSourceError, match="^dimse: PACS returned an instance that was not asked for$"):
        retrieve_series([provider], [SeriesRequest(STUDY_UID, OTHER_SERIES)], tmp_path / "landing")
    assert not (tmp_path / "landing").exists()


def test_the_asked_series_from_the_same_peer_is_accepted(wrong_series_pacs, tmp_path):
    """The control: the same peer, asked for the series it sends, passes."""
    provider = DimseProvider(LOOPBACK, wrong_series_pacs.server_address[1], "WRONG", "RADIOMICS_CDS", 10.0)
    paths = retrieve_series([provider], [SeriesRequest(STUDY_UID, SERIES_UID)], tmp_path / "landing")
    assert len(paths) == len(ct_slices())


def test_a_full_disk_is_a_source_failure(tmp_path):
    """ENOSPC raised by the writer stands for the disk filling up (no peer can cause it)."""
    def full(_stream: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    landing = Landing(tmp_path / "landing", RetrievalLimits())
    with pytest.raises(PriorSourceError, match=r"^cannot store a retrieved instance \(No space left on device\)$"):
        landing.write(SeriesRequest(STUDY_UID, SERIES_UID), full)


def _report(frame: str) -> PriorReport:
    return PriorReport(sop_instance_uid="1.2.3.1", series_instance_uid="1.2.3.2", study_instance_uid="1.2.3.3",
                       study_date="20200101", study_time="", frame_of_reference_uid=frame, algorithm_version="1",
                       lesions=(), notes=(), ct_series_instance_uid="1.2.3.4")


def test_a_prior_ct_that_cannot_be_had_is_said_in_the_note():
    def unreachable(_study: str, _series: str | None) -> None:
        raise PriorSourceError("dicomweb: DICOMweb WADO-RS failed: HTTP 503")

    current = load_ct_series(ct_slices())
    mapping, note = prior_mapping(FrameSources(current, (), unreachable), current.frame_of_reference_uid,
                                  _report("1.2.3.9"))
    assert mapping is None
    assert note == f"{NO_REGISTRATION} (prior CT not retrieved: dicomweb: DICOMweb WADO-RS failed: HTTP 503)"


def test_evidence_requests_name_the_ct_series_and_the_contour_instance():
    """Built as our SR's Current Requested Procedure Evidence is (highdicom's hierarchy)."""
    def series(uid: str, *items: tuple[str, str]) -> Dataset:
        entry = Dataset()
        entry.SeriesInstanceUID = uid
        entry.ReferencedSOPSequence = [Dataset() for _ in items]
        for item, (sop_class, sop_instance) in zip(entry.ReferencedSOPSequence, items):
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
        return entry

    study = Dataset()
    study.StudyInstanceUID = STUDY_UID
    study.ReferencedSeriesSequence = [series(SERIES_UID, (CTImageStorage, "1.1"), (CTImageStorage, "1.2")),
                                      series(OTHER_SERIES, ("1.2.840.10008.5.1.4.1.1.481.3", "2.1"))]
    sr = Dataset()
    sr.CurrentRequestedProcedureEvidenceSequence = [study]
    assert evidence_requests(sr) == [SeriesRequest(STUDY_UID, SERIES_UID), SeriesRequest(STUDY_UID, OTHER_SERIES, "2.1")]



def test_the_files_a_c_get_received_are_forgotten_once_its_connection_ended(wrong_series_pacs, tmp_path, monkeypatch):
    """In `serve`, the listener's ReceiveDirectory receives every C-STORE of the process, the
    worker's C-GET sub-operations included; nobody asks about those, so they must not pile up."""
    receiving = ReceiveDirectory(tmp_path / "receiving")
    monkeypatch.setattr(dimse_messages, "NamedTemporaryFile", receiving.create)
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", True)
    provider = DimseProvider(LOOPBACK, wrong_series_pacs.server_address[1], "WRONG", "RADIOMICS_CDS", 10.0)
    paths = retrieve_series([provider], [SeriesRequest(STUDY_UID, SERIES_UID)], tmp_path / "landing")
    assert len(paths) == len(ct_slices())

    wait_until(lambda: all(not owner.is_alive() for _, owner in receiving._open.values()), 30,
               "the C-GET's connection to end")
    listener_file = receiving.create()  # the next C-STORE, from any connection
    assert list(receiving._open) == [listener_file.name]
    assert [p.name for p in (tmp_path / "receiving").iterdir()] == [Path(listener_file.name).name]


def test_a_uid_in_why_the_prior_ct_cannot_be_had_stays_out_of_the_note():
    """The note goes into the SR, the Bundle and the page; a retrieved instance's own UID (what
    an older reader said about undecodable pixel data) is shown as the log's token."""
    instance = "1.2.826.0.1.3680043.10.543.77"

    def undecodable(_study: str, _series: str | None) -> None:
        raise PriorSourceError(f"the retrieved prior CT is unusable: instance {instance}: pixel data cannot be decoded")

    current = load_ct_series(ct_slices())
    _, note = prior_mapping(FrameSources(current, (), undecodable), current.frame_of_reference_uid, _report("1.2.3.9"))
    assert note == (f"{NO_REGISTRATION} (prior CT not retrieved: the retrieved prior CT is unusable: "
                    f"instance {uid_token(instance)}: pixel data cannot be decoded)")
