"""dcmtk's storescp as the PACS of the delivery and TLS tests: a real C-STORE SCP on loopback
that writes what it receives to a folder. Started from the system's binary (require_tool: the
test must be marked external), stopped by the fixture that started it.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.support.external import require_tool
from tests.support.processes import LOOPBACK, free_port, stop_process, wait_until
from tests.support.service import OUR_AE

PACS_AE = "PACS"


class StoreScp:
    """storescp on 127.0.0.1:`port` (a free one by default), storing into `directory`;
    `options` are further storescp options placed before the AE title (e.g. TLS). Ready once it
    answers a C-ECHO."""

    def __init__(self, directory: Path, port: int | None = None, options: tuple[str, ...] = ()) -> None:
        self.port = free_port() if port is None else port
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory.parent / f"storescp-{self.port}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [require_tool("storescp"), *options, "--aetitle", PACS_AE, "--output-directory", str(directory),
             "--acse-timeout", "10", "--dimse-timeout", "30", "--verbose", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 20, f"storescp on port {self.port}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"storescp exited: {self.read_log()}")
        ae = AE(ae_title=OUR_AE)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
        ae.add_requested_context(Verification)
        association = ae.associate(LOOPBACK, self.port, ae_title=PACS_AE)
        if not association.is_established:
            return False
        status = association.send_c_echo()
        association.release()
        return getattr(status, "Status", None) == 0x0000

    def received(self) -> list[pydicom.Dataset]:
        return [pydicom.dcmread(p) for p in sorted(self.directory.iterdir()) if p.is_file()]

    def received_uids(self) -> list[str]:
        """The SOP Instance UIDs received, sorted."""
        return sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                      for p in self.directory.iterdir() if p.is_file())

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_process(self.process, 10)
        self.log.close()


class TlsStoreScp(StoreScp):
    """storescp over TLS with `key` / `cert`, trusting `ca`; with `require_client`, peers must
    present a certificate that CA issued. Ready once it accepts a TCP connection (a C-ECHO would
    need a TLS client, which is what the tests themselves exercise)."""

    def __init__(self, directory: Path, *, key: Path, cert: Path, ca: Path, require_client: bool = True) -> None:
        peer = "-rc" if require_client else "-ic"
        super().__init__(directory, options=("+tls", str(key), str(cert), "+cf", str(ca), "-pw", peer))

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"storescp exited: {self.read_log()}")
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1):
                return True
        except OSError:
            return False
