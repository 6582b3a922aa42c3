"""The study worker wakes when the listener indexes an instance, and when a waiting study's quiet
period runs out, not only at its poll: with a poll of an hour, a study sent to a real listener
(pynetdicom SCU to our SCP) is still scored, in both cases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, RTStructureSetStorage  # type: ignore[attr-defined]

from service.config import Config
from service.ingest.index import DONE, StudyIndex
from service.ingest.receive import ReceiveDirectory
from service.ingest.scp import StorageHandlers, build_ae, start_listener
from service.ingest.spool import Spool
from service.location import LocationRules
from service.outputs.artefacts import Artefact
from service.outputs.outbox import Outbox
from service.scoring.in_process import InProcessScorer
from service.scoring.lesion import ScoringContext
from service.scoring.panel import signature_panel
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from service.worker import StudyWorker
from tests.support import small_study
from tests.support.destinations import RecordingDestination
from tests.support.processes import LOOPBACK, free_port, wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore:The value length")]
OUR_AE = "RADIOMICS_CDS"
AN_HOUR = 3600.0


@pytest.fixture(params=[0.001, 2.0], ids=["arrival", "quiet-period"])
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, StudyIndex]]:
    """Listener and worker as `serve` wires them: the handlers set the worker's `arrivals`. The
    small study is not complete by geometry (its CT ends at its contours), so the quiet period
    decides: with 1 ms, the study is ready once its RTSTRUCT (sent last) is indexed; with 2 s,
    no arrival follows to wake the worker when it runs out."""
    config = Config(var_dir=tmp_path / "var", quiet_seconds=request.param, hard_cap_seconds=600)
    index = StudyIndex(config.index_path)
    outbox = Outbox(tmp_path / "var" / "outbox.sqlite", [RecordingDestination("pacs", Artefact.SR)])
    signature = load_signature()
    scorer = InProcessScorer(ScoringContext(ExtractionSettings(), signature, LocationRules(), signature_panel(signature)))
    worker = StudyWorker(config, index, scorer, outbox, poll_seconds=AN_HOUR)
    worker.start()  # its first cycle finds nothing; the next poll is an hour away
    port = free_port()
    server = start_listener(build_ae(OUR_AE, 2), LOOPBACK, port, StorageHandlers(
        Spool(config.spool_dir), index, ReceiveDirectory(tmp_path / "var" / "receiving"), arrivals=worker.arrivals))
    yield port, index
    server.shutdown()
    worker.stop()
    outbox.stop()
    index.close()


def test_an_arrival_wakes_the_worker(site: tuple[int, StudyIndex]) -> None:
    port, index = site
    study_uid = generate_uid()
    ct, rtstruct = small_study.ct_slices(), small_study.rtstruct()
    for ds in ct:
        ds.StudyInstanceUID, ds.SliceThickness = study_uid, small_study.SLICE_MM
    rtstruct.StudyInstanceUID, rtstruct.SeriesInstanceUID = study_uid, generate_uid()
    ae = AE(ae_title="Modality_1")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(RTStructureSetStorage)
    association = ae.associate(LOOPBACK, port, ae_title=OUR_AE)
    assert association.is_established
    for ds in [*ct, rtstruct]:
        assert association.send_c_store(ds).Status == 0x0000
    association.release()
    # Far below the hour: only a wake-up (the arrival's, the quiet period's end) can have started it.
    wait_until(lambda: index.study(study_uid) is not None and index.study(study_uid).state == DONE, 240,
               "the study to be scored after its last instance")
