"""nginx (Debian `nginx-light`) as the TLS-terminating reverse proxy a site puts in front of
Orthanc's HTTP API when it opens it to other hosts: HTTPS on a loopback port with a certificate
of the test's CA, forwarding to Orthanc's plain HTTP on loopback.

Why not Orthanc's own HTTPS (SslEnabled): Debian's Orthanc 1.10.1 here drops the connection
after the handshake and exits, so it is not what a site can run; nginx in front is.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.certs import KeyPair
from tests.support.external import missing_dependency, require_external
from tests.support.processes import free_port, stop_process


def find_nginx() -> str:
    """The nginx binary (in /usr/sbin, not on a normal user's PATH)."""
    require_external("nginx")
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if path is None:
        missing_dependency("nginx is not installed (Debian: nginx-light)")
    return path


class TlsProxy:
    """nginx serving https://127.0.0.1:<port> with `server`'s certificate, forwarding to
    `upstream` (http://127.0.0.1:<port>), its configuration, temporary files and logs in `workdir`."""

    def __init__(self, workdir: Path, server: KeyPair, upstream: str) -> None:
        binary = find_nginx()
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        config = workdir / "nginx.conf"
        config.write_text(f"""daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{}}
http {{
  access_log off;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {server.cert};
    ssl_certificate_key {server.key};
    location / {{
      proxy_pass {upstream};
      proxy_set_header Host $host:$server_port;
    }}
  }}
}}
""")
        self.process = subprocess.Popen([binary, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait_listening(workdir)

    def _wait_listening(self, workdir: Path, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited ({self.process.returncode}):\n"
                                     f"{(workdir / 'error.log').read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"nginx not listening after {timeout_s} s")

    def stop(self) -> None:
        """SIGTERM, nginx's fast shutdown: the master stops its workers before it exits (a SIGKILL
        to the master left them running, holding the port and the working directory)."""
        stop_process(self.process, 30)
