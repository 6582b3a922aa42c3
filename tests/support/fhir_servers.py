"""FHIR servers for the delivery tests: SEKMET (the `sekmet-fhir` package), a real FHIR R4
server run as its own process, and a scripted fake for the answers no real server gives on demand.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.certs import KeyPair
from tests.support.external import require_package
from tests.support.processes import LOOPBACK, free_port, stop_process, wait_until


def require_sekmet() -> None:
    """SEKMET runs as a peer process: the test must be marked external."""
    require_package("sekmet", "pip install -e '.[test]'")


class FhirServer:
    """`sekmet serve` on 127.0.0.1 with its own database; `base` is its FHIR base URL.

    stop() and start() again keep the database and the port: the same EHR, down for a while.
    `server_auth` is SEKMET's inbound auth setting (none by default; SMART in the SMART tests).
    """

    def __init__(self, directory: Path, server_auth: dict | None = None, tls: KeyPair | None = None,
                 tls_ca_file: Path | None = None) -> None:
        """`tls`: serve https with this certificate and key (SEKMET's tls_certfile/tls_keyfile);
        the test's own requests then trust `tls_ca_file`."""
        self.port = free_port()
        self.base = f"{'https' if tls else 'http'}://{LOOPBACK}:{self.port}/fhir"
        self._context = ssl.create_default_context(cafile=tls_ca_file) if tls else None
        self.directory = directory
        directory.mkdir(parents=True)
        self.settings = directory / "settings.yaml"
        self.settings.write_text(json.dumps({  # JSON is YAML
            "host": LOOPBACK, "port": self.port, "base_url": self.base,
            "data_dir": str(directory / "data"),
            "own_private_key_path": str(directory / "keys" / "sekmet_private.pem"),
            "simulator": {"enabled": False},  # a plain FHIR store: nothing acts on what we write
            "validation": {"inbound": "strict"},
            **({"server_auth": server_auth} if server_auth else {}),
            **({"tls_certfile": str(tls.cert), "tls_keyfile": str(tls.key)} if tls else {}),
        }))
        self.log_path = directory / "sekmet.log"
        self.start()

    def start(self) -> None:
        self.log = self.log_path.open("a")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sekmet.cli", "serve", "--config", str(self.settings)],
            cwd=self.directory, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, 60, "the FHIR server to answer /metadata")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"sekmet exited: {self.log_path.read_text()}")
        try:
            return self.get("metadata")["resourceType"] == "CapabilityStatement"
        except OSError:
            return False

    bearer: str | None = None  # an access token for the test's own reads, when the server wants one

    def _headers(self, **extra: str) -> dict[str, str]:
        authorization = {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}
        return {"Accept": "application/fhir+json", **authorization, **extra}

    def get(self, relative: str) -> dict:
        request = urllib.request.Request(f"{self.base}/{relative}", headers=self._headers())
        with urllib.request.urlopen(request, timeout=10, context=self._context) as answer:
            return json.load(answer)

    def search(self, resource_type: str, **params: str) -> list[dict]:
        """Every match (the server pages at 20; _count raises that for our few resources)."""
        query = urllib.parse.urlencode({**params, "_count": "200"})
        bundle = self.get(f"{resource_type}?{query}")
        assert bundle["total"] == len(bundle.get("entry", [])), "more matches than one page"
        return [entry["resource"] for entry in bundle.get("entry", [])]

    def create(self, resource: dict) -> dict:
        request = urllib.request.Request(
            f"{self.base}/{resource['resourceType']}", data=json.dumps(resource).encode(), method="POST",
            headers=self._headers(**{"Content-Type": "application/fhir+json"}),
        )
        with urllib.request.urlopen(request, timeout=10, context=self._context) as answer:
            return json.load(answer)

    def stop(self) -> None:
        stop_process(self.process, 15)
        self.log.close()


class ScriptedFhirServer:
    """FAKE FHIR endpoint: a real server does not produce 503, 429, a chosen 400, a redirect, a
    hang or an access token revoked early on demand, so this answers each request with the next
    scripted (status, body[, headers]) and records the request; a status of None is a hang of
    `body` seconds before a 200."""

    def __init__(self, answers: list[tuple]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict, bytes]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append((self.command, self.path, dict(self.headers), body))
                status, answer, *headers = fake.answers.pop(0)
                if status is None:
                    time.sleep(answer)
                    status, answer = 200, {}
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in (headers[0] if headers else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.base = f"http://{LOOPBACK}:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
