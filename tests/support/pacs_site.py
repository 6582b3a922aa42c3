"""A site of the service tests: a running `serve` and the Orthanc it delivers to and queries
for priors, with the waits those tests share."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom

from tests.support.orthanc import Orthanc
from tests.support.processes import wait_until
from tests.support.service import RunningService

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
        sent = self.service.storescu(*paths)
        assert sent.returncode == 0, sent.stderr
