"""A real Orthanc (Debian package `orthanc`) as the PACS of integration tests.

Started from the binary with a configuration generated from the reference files in
deploy/orthanc/ (the documented setup is the tested setup): only the storage folders, the ports,
the address of radiomics-cds and the stability delay are changed, everything on loopback, in a
temporary folder. Never the system's Orthanc service or its database.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import free_port
from tests.support.external import missing_dependency, require_external

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "orthanc"
REFERENCE_CONFIG = REFERENCE_DIR / "orthanc.json"
ROUTING_SCRIPT = REFERENCE_DIR / "route-to-radiomics-cds.lua"
MODALITY = "radiomics-cds"  # the DicomModalities entry the routing script sends to



def find_orthanc() -> str:
    """The Orthanc binary: on PATH, else where Debian puts it (/usr/sbin is not on a normal
    user's PATH). Skips when absent, fails under RCDS_REQUIRE_EXTERNAL=1 (tests/support/external.py)."""
    require_external("Orthanc")
    path = shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(p, os.X_OK)), None)
    if path is None:
        missing_dependency("Orthanc is not installed (Debian: orthanc)")
    return path


def reference_config() -> dict[str, Any]:
    return json.loads(REFERENCE_CONFIG.read_text())


def run_config(workdir: Path, *, http_port: int, dicom_port: int, modality_host: str, modality_port: int,
                stable_age: int, modality_rights: dict[str, bool] | None = None) -> dict[str, Any]:
    """The reference configuration with this run's folders and ports; nothing else changes,
    except that stores are accepted only from known modalities (the strictest site policy: the
    radiomics-cds entry's AllowStore is then what lets the SR in). The reference plugins (the
    DICOMweb plugin, where Debian's orthanc-dicomweb puts it) load as they are: skipped when
    absent, like Orthanc itself. `modality_rights` overrides the radiomics-cds entry's Allow*
    (e.g. AllowFind false: a site that refuses our queries)."""
    for plugin in reference_config()["Plugins"]:
        if not Path(plugin).is_file():
            missing_dependency(f"Orthanc plugin {plugin} is not installed (Debian: orthanc-dicomweb)")
    config = reference_config()
    storage = workdir / "storage"
    config.update({
        "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "HttpPort": http_port, "DicomPort": dicom_port, "RemoteAccessAllowed": False,
        "StableAge": stable_age,
        "LuaScripts": [str(REFERENCE_DIR / script) for script in config["LuaScripts"]],
        "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True,
    })
    config["DicomModalities"][MODALITY].update({"Host": modality_host, "Port": modality_port, **(modality_rights or {})})
    return config


class Orthanc:
    """A running Orthanc with its own configuration, storage and log in `workdir`."""

    def __init__(self, workdir: Path, *, modality_port: int, modality_host: str = "127.0.0.1",
                 dicom_port: int | None = None, http_port: int | None = None, stable_age: int = 2,
                 modality_rights: dict[str, bool] | None = None, http_users: dict[str, str] | None = None) -> None:
        """`http_port` chosen by the caller lets a test send to an Orthanc before it is started
        (an outage); else a free one. `http_users` (user: password): its REST API and DICOMweb
        want HTTP Basic credentials of one of them (Orthanc's AuthenticationEnabled, as a site
        that opens them to other hosts must set); this class's own requests use the first."""
        binary = find_orthanc()
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.config = run_config(workdir, http_port=self.http_port, dicom_port=self.dicom_port,
                                  modality_host=modality_host, modality_port=modality_port,
                                  stable_age=stable_age, modality_rights=modality_rights)
        if http_users:
            self.config.update({"AuthenticationEnabled": True, "RegisteredUsers": http_users})
        self._authorization = ("Basic " + base64.b64encode(":".join(next(iter(http_users.items()))).encode()).decode()
                               if http_users else None)
        self.config_path = workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.aet = self.config["DicomAet"]
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = self.base + self.config["DicomWeb"]["Root"].rstrip("/")
        self.log_path = workdir / "orthanc.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen([binary, str(self.config_path)], cwd=workdir, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"Orthanc exited ({self.process.returncode}):\n{self.read_log()}")
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"Orthanc not ready after {timeout_s} s:\n{self.read_log()}")

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> bytes:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self._authorization:
            request.add_header("Authorization", self._authorization)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"Orthanc {method} {path}: HTTP {error.code} {error.read().decode(errors='replace')}")

    def get(self, path: str) -> Any:
        return json.loads(self._request("GET", path))

    def get_bytes(self, path: str) -> bytes:
        return self._request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return json.loads(self._request("POST", path, data, "application/json"))

    def delete(self, path: str) -> None:
        """DELETE a resource (e.g. /series/<id>): what PACS no longer holds."""
        self._request("DELETE", path)

    def upload(self, *files: Path) -> list[dict[str, Any]]:
        """POST /instances, one file at a time: how a modality's images arrive over the REST API.
        Each answer has the instance's ID, ParentSeries, ParentStudy, ParentPatient, Status."""
        answers = []
        for path in files:
            answer = json.loads(self._request("POST", "/instances", path.read_bytes(), "application/dicom"))
            assert answer["Status"] in ("Success", "AlreadyStored"), answer
            answers.append(answer)
        return answers

    def read_log(self, tail_chars: int | None = None) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-tail_chars:] if tail_chars else text

    def stop(self) -> None:
        """End it at once (SIGKILL). A test's Orthanc is a throwaway PACS in a temporary directory
        that nothing reads once the test is done, and Orthanc's own orderly stop takes 3.4 s here
        (fixed waits in its HTTP and DICOM servers), which the suite paid at every test's end."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()
