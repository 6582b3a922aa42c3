"""STOW-RS delivery through the durable outbox to a real Orthanc with its DICOMweb plugin
(Debian `orthanc` and `orthanc-dicomweb`, configured from deploy/orthanc/ by tests/support/orthanc.py).

The SR is the synthetic study result's, built as the pipeline builds it; whether it arrived is
asked of Orthanc's own REST API (/tools/lookup), not of the client. The outbox's clock is driven
through `deliver_due(now)` as in test_delivery.py. No fakes: the outage is an Orthanc not yet
listening on its port, the refusal Orthanc's 404 for a URL that is not its DICOMweb root.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

from service.config import load_config
from service.outputs.destinations import PacsByStowRs, configured_destinations
from service.outputs.dicomweb_access import DicomwebAccess
from service.outputs.outbox import DELIVERED, FAILED, PENDING
from service.outputs.sr import build_measurement_report
from tests.support.orthanc import Orthanc, find_orthanc
from tests.support.outbox import Outboxes, only
from tests.support.processes import free_port
from tests.support.secret_volume import SecretVolume
from tests.support.synthetic_results import make_study_result
from tests.support.written_outputs import write_sr

pytestmark = [pytest.mark.external, pytest.mark.timeout(180)]

FAR_FUTURE = 10 * 365 * 24 * 3600.0
"""Added to now: every pending delivery is due, whatever its backoff."""


@pytest.fixture(scope="module")
def sr_path(tmp_path_factory) -> Path:
    result, evidence = make_study_result()
    return write_sr(build_measurement_report(result, evidence), tmp_path_factory.mktemp("sr"))


@pytest.fixture
def start_orthanc(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """Starts an Orthanc (on `http_port` when given) when called; stops it at the end."""
    find_orthanc()
    started: list[Orthanc] = []

    def start(http_port: int | None = None, http_users: dict[str, str] | None = None) -> Orthanc:
        started.append(Orthanc(tmp_path / f"orthanc-{len(started)}", modality_port=free_port(), http_port=http_port,
                               http_users=http_users))
        return started[-1]

    yield start
    for orthanc in started:
        orthanc.stop()


def _instances_with_uid(orthanc: Orthanc, sop_instance_uid: str) -> list[dict]:
    """Orthanc's own index, asked by SOP Instance UID."""
    found = orthanc.post("/tools/lookup", sop_instance_uid.encode())
    return [item for item in found if item["Type"] == "Instance"]


def test_the_sr_arrives_in_the_archive(sr_path: Path, outboxes: Outboxes, start_orthanc) -> None:
    orthanc = start_orthanc()
    outbox = outboxes([PacsByStowRs(DicomwebAccess(orthanc.dicomweb_url))])
    outbox.enqueue("pacs-stow", sr_path)

    assert outbox.deliver_due() == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts, delivery.last_error) == (DELIVERED, 1, None)
    sr = pydicom.dcmread(sr_path)
    (stored,) = _instances_with_uid(orthanc, str(sr.SOPInstanceUID))
    tags = orthanc.get(f"/instances/{stored['ID']}/simplified-tags")
    assert (tags["Modality"], tags["StudyInstanceUID"]) == ("SR", str(sr.StudyInstanceUID))


def test_an_outage_is_retried_until_the_archive_is_up(sr_path: Path, outboxes: Outboxes, start_orthanc) -> None:
    port = free_port()
    outbox = outboxes([PacsByStowRs(DicomwebAccess(f"http://127.0.0.1:{port}/dicom-web"))])
    outbox.enqueue("pacs-stow", sr_path)

    outbox.deliver_due()
    down = only(outbox)
    assert (down.state, down.attempts) == (PENDING, 1)
    assert "unreachable" in (down.last_error or "")

    orthanc = start_orthanc(http_port=port)
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 1
    up = only(outbox)
    assert (up.state, up.attempts, up.last_error) == (DELIVERED, 2, None)
    assert len(_instances_with_uid(orthanc, str(pydicom.dcmread(sr_path).SOPInstanceUID))) == 1


def test_a_refusal_is_permanent(sr_path: Path, outboxes: Outboxes, start_orthanc) -> None:
    orthanc = start_orthanc()
    outbox = outboxes([PacsByStowRs(DicomwebAccess(orthanc.base + "/not-dicom-web"))], max_attempts=10)
    outbox.enqueue("pacs-stow", sr_path)

    outbox.deliver_due()
    refused = only(outbox)
    assert (refused.state, refused.attempts) == (FAILED, 1)
    assert refused.last_error == "STOW-RS answered HTTP 404"
    assert orthanc.get("/instances") == []


def test_an_archive_that_wants_credentials_gets_them(sr_path: Path, outboxes: Outboxes, start_orthanc) -> None:
    """Orthanc with authentication on (as a site that opens its DICOMweb to other hosts must
    run it) takes the SR with stow_basic_auth, whose password may hold a colon; without
    credentials, or with a wrong password given in the configuration (it cannot change while the
    service runs), it answers 401: a permanent failure whose message names the settings that
    fix it, and nothing is stored."""
    orthanc = start_orthanc(http_users={"rcds": "s3cret:pass"})
    refused_by = {"none": DicomwebAccess(orthanc.dicomweb_url),
                  "wrong": DicomwebAccess(orthanc.dicomweb_url, basic_auth="rcds:s3cret")}
    for access in refused_by.values():
        outbox = outboxes([PacsByStowRs(access)])
        outbox.enqueue("pacs-stow", sr_path)
        outbox.deliver_due()
        refused = only(outbox)
        assert (refused.state, refused.attempts) == (FAILED, 1)
        assert "HTTP 401" in (refused.last_error or "") and "stow_basic_auth" in (refused.last_error or "")
    assert _instances_with_uid(orthanc, str(pydicom.dcmread(sr_path).SOPInstanceUID)) == []

    outbox = outboxes([PacsByStowRs(DicomwebAccess(orthanc.dicomweb_url, basic_auth="rcds:s3cret:pass"))])
    outbox.enqueue("pacs-stow", sr_path)
    assert outbox.deliver_due() == 1
    assert (only(outbox).state, only(outbox).last_error) == (DELIVERED, None)
    assert len(_instances_with_uid(orthanc, str(pydicom.dcmread(sr_path).SOPInstanceUID))) == 1


def test_a_credential_file_rotated_while_the_service_runs_is_sent_from_the_next_attempt(
        sr_path: Path, outboxes: Outboxes, start_orthanc, tmp_path: Path) -> None:
    """The archive takes the new password before kubelet has updated the pod's copy of the
    Secret: its 401s to the old one are retried, not given up, and the first attempt after the
    rotation stores the SR, with no restart and no `redeliver`."""
    orthanc = start_orthanc(http_users={"rcds": "new-s3cret"})
    secret = SecretVolume(tmp_path / "stow-basic-auth", "basic-auth", "rcds:old-s3cret\n")
    stow, _ = configured_destinations(load_config(environ={
        "RCDS_STOW_URL": orthanc.dicomweb_url, "RCDS_STOW_BASIC_AUTH_FILE": str(secret.path)}))
    outbox = outboxes([stow])
    outbox.enqueue("pacs-stow", sr_path)

    outbox.deliver_due()
    refused = only(outbox)
    assert (refused.state, refused.attempts) == (PENDING, 1)
    assert refused.last_error == ("STOW-RS answered HTTP 401: the archive refused the credential from "
                                  "stow_basic_auth_file, which is read again at each attempt")

    secret.rotate("rcds:new-s3cret")
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 1
    assert (only(outbox).state, only(outbox).attempts, only(outbox).last_error) == (DELIVERED, 2, None)
    assert len(_instances_with_uid(orthanc, str(pydicom.dcmread(sr_path).SOPInstanceUID))) == 1
