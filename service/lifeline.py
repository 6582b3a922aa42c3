"""The lifeline between `serve` and its scorer child: the child lives exactly as long as serve.

serve starts the scorer in its own session (so a Ctrl-C reaches serve alone, which stops the
scorer after ingest has finished its study), so nothing else ends the child when serve ends:
after a kill -9 of serve it kept the scorer port, and the next serve reported ready against
that stale scorer. The lifeline is a socket pair: serve keeps one end, the child inherits the
other (`scorer --lifeline-fd N`, a hidden option). Over it:

- the child says it is ready once its gRPC server is bound and started, and serve waits for
  that word, not for whatever answers at `scorer_address`;
- the child learns that serve is gone. However serve ends (exit, crash, SIGKILL), the kernel
  closes serve's end and the child's read returns EOF; the child then stops as on SIGTERM.
  This is portable and has no race: the EOF waits to be read even when serve died before
  the child started reading.

On Linux the child also asks the kernel for a SIGTERM when its parent dies (prctl
PR_SET_PDEATHSIG): belt and braces, it does not depend on serve's end of the pair being held
by serve alone. SIGTERM rather than SIGKILL: the scorer takes its usual stop (no new calls,
`scorer_grace_seconds` for calls in flight, whose client is gone anyway) and then exits; it
holds no state a hard kill would save. A parent that died before the prctl call is caught by
the EOF.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

READY = b"ready\n"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def start_child(command: Sequence[str], env: Mapping[str, str]) -> tuple[subprocess.Popen, socket.socket]:
    """Parent side: run `command --lifeline-fd N` in its own session; returns it and our end."""
    ours, theirs = socket.socketpair()
    with theirs:  # the child has its copy; ours closed, only the child's end keeps it open
        child = subprocess.Popen([*command, "--lifeline-fd", str(theirs.fileno())], env=dict(env),
                                 start_new_session=True, pass_fds=(theirs.fileno(),))
    return child, ours


def wait_ready(ours: socket.socket, timeout_s: float) -> bool:
    """Parent side: True once the child said it is ready; False when it ended first or did not
    say so in time (logged)."""
    ours.settimeout(timeout_s)
    try:
        with ours.makefile("rb") as stream:
            return stream.readline() == READY
    except TimeoutError:
        log.error("the scoring core was not ready within %g s", timeout_s)
        return False


def follow_parent(fd: int, stop: threading.Event) -> Callable[[], None]:
    """Child side: set `stop` when the parent is gone; returns the call that tells it we are ready."""
    _sigterm_when_parent_dies()
    end = socket.socket(fileno=fd)
    threading.Thread(target=_watch_parent, args=(end, stop), name="parent-watch", daemon=True).start()
    return lambda: end.sendall(READY)


def _watch_parent(end: socket.socket, stop: threading.Event) -> None:
    """The parent never writes: any read returns only at EOF (or a reset), i.e. when it is gone."""
    try:
        while end.recv(64):
            pass
    except OSError:
        pass
    log.info("the parent process is gone: stopping")
    stop.set()


def _sigterm_when_parent_dies() -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d); relying on the lifeline socket",
                    ctypes.get_errno())
