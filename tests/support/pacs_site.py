"""A site of the service tests: a running `serve` and the Orthanc it delivers to and queries
for priors, with the waits those tests share."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pydicom

from tests.support.orthanc import Orthanc, find_orthanc, reference_config
from tests.support.processes import LOOPBACK, free_port, wait_until
from tests.support.service import QUIET_SECONDS, RunningService

TIMEOUT_S = 240


@dataclasses.dataclass
class Site:
    orthanc: Orthanc
    service: RunningService

    def sr(self, study_uid: str) -> Path:
        """The study's current SR in the outbox."""
        self.service.wait_for(study_uid, timeout_s=TIMEOUT_S)
        path = self.service.result_sr(study_uid)
        assert path is not None, self.service.status()
        return path

    def in_pacs(self, sr: Path) -> None:
        """Wait until Orthanc holds this SR (it was delivered)."""
        uid = str(pydicom.dcmread(sr, stop_before_pixels=True).SOPInstanceUID)
        wait_until(lambda: bool(self.orthanc.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": uid}})),
                   TIMEOUT_S, "the SR to reach Orthanc")

    def send(self, *paths: Path) -> None:
        """Send files to the service with dcmtk's storescu."""
        send(self.service, *paths)


def send(service: RunningService, *paths: Path) -> None:
    """Send files to a service with dcmtk's storescu; it must accept them all."""
    sent = service.storescu(*paths)
    assert sent.returncode == 0, sent.stderr


def site_settings(dicom_port: int, web_port: int, **priors: object) -> dict[str, object]:
    """A service whose PACS is the Orthanc at these ports, for deliveries and (unless `priors`
    says otherwise) priors."""
    return {"quiet_seconds": QUIET_SECONDS, "pacs_host": LOOPBACK, "pacs_port": dicom_port,
            "pacs_ae_title": reference_config()["DicomAet"], "delivery_initial_backoff_seconds": 1,
            "prior_dicomweb_url": f"http://{LOOPBACK}:{web_port}/dicom-web", **priors}


@contextlib.contextmanager
def running_site(root: Path, modality_rights: dict[str, bool] | None = None, **priors: object) -> Iterator[Site]:
    """Orthanc and `serve` delivering to it; `priors`: the prior_* settings (the DICOMweb URL is
    this Orthanc's unless given); `modality_rights`: Orthanc's Allow* for us, if not the reference."""
    find_orthanc()
    dicom_port, web_port = free_port(), free_port()
    service = RunningService(root / "var", **site_settings(dicom_port, web_port, **priors))
    try:
        orthanc = Orthanc(root / "orthanc", modality_port=service.dicom_port, dicom_port=dicom_port,
                          http_port=web_port, modality_rights=modality_rights)
    except BaseException:
        service.stop()
        raise
    try:
        yield Site(orthanc, service)
    finally:
        orthanc.stop()
        service.stop()


def study_uid_of(study: Path) -> str:
    """The Study Instance UID of a shared study directory (its image/ CT)."""
    return str(pydicom.dcmread(next((study / "image").iterdir()), stop_before_pixels=True).StudyInstanceUID)
