"""A credential that may come from a file (the *_file settings), read again when the file changes.

Container platforms hand out credentials as files: a Kubernetes Secret mounted as a volume, a
Docker secret. When a Secret is rotated, Kubernetes updates the mounted files in place (kubelet
writes the new files into a fresh hidden directory and swaps the `..data` symlink the visible
names point through, typically within a minute or two). A credential read once at start would
then be sent, stale, until someone restarted the service: the peer answers 401 to every
delivery or lookup from the rotation on.

So the file is followed. At each use, the path is stat'ed (following the symlinks, so the swap
shows as another inode) and read again when its device, inode, size or modification time
differ from the last read: one stat per use, one read per change. A file that cannot give a
credential for a moment (a rotation caught midway, a Secret emptied while it is being edited,
a file being rewritten in place) keeps the last good credential in use, with one WARNING until
the file gives one again. Neither the log nor any error text ever holds a credential: they name
the setting and the path.

Whether the credential is still *right* is for its peer to say; the consumers treat a refusal of
a credential from a file as worth retrying (the file may be about to change), and one given in
the configuration as final.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from service.errors import ConfigError

log = logging.getLogger(__name__)


def read_secret(path: Path, setting: str) -> str:
    """The credential in the file at `path`, without surrounding whitespace (a file written by
    `echo` ends in a newline); ConfigError naming `setting` and `path` when there is none."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"{setting}: cannot read {path} ({reason})") from None
    if not secret:
        raise ConfigError(f"{setting}: {path} is empty")
    return secret


class SecretFile:
    """The credential in the file `setting` names, as the file holds it now.

    `value` is what the configuration read at start (service.config checked it then). Threads
    may share one: the prior lookups' client asks it for every request.
    """

    def __init__(self, path: Path, setting: str, value: str) -> None:
        self.path = path
        self.setting = setting
        self._value = value
        self._seen: tuple[int, int, int, int] | None = None  # (device, inode, size, mtime_ns) last read
        self._failing = False  # a WARNING was logged; the next good read ends the episode
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the credential
        return f"SecretFile({self.setting}={str(self.path)!r})"

    def value(self) -> str:
        """The credential: read again when the file changed since the last read; the last good
        one when the file cannot give one now."""
        with self._lock:
            try:
                status = os.stat(self.path)  # before the read: a change between the two is read again next time
                seen = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
                if seen != self._seen:
                    secret = read_secret(self.path, self.setting)
                    if secret != self._value:
                        log.info("%s: %s changed; its new credential is used from now on", self.setting, self.path)
                    self._value, self._seen, self._failing = secret, seen, False
            except OSError as error:
                self._keep(f"{self.setting}: cannot read {self.path} ({error.strerror or error})")
            except ConfigError as error:
                self._keep(str(error))
            return self._value

    def _keep(self, reason: str) -> None:
        """Once per episode: a file being rotated may be unreadable or empty for a moment."""
        if not self._failing:
            log.warning("%s; the credential read before is used until the file gives one again", reason)
            self._failing = True


Credential = str | SecretFile
"""A credential as its consumers take it: given in the configuration, or followed in its file."""


def current(credential: Credential) -> str:
    """The credential to send now."""
    return credential if isinstance(credential, str) else credential.value()
