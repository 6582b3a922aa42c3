"""DICOM TLS: the listener's server context and the sender's client context (TLS 1.2 or later).

Certificates, keys and CA bundles are PEM files. Anything wrong with them (unreadable, not PEM,
a key that does not belong to its certificate, an encrypted key) is a ConfigError naming the
setting, raised when the context is built: at start for the service.

pynetdicom reports a failed TLS connection like any other failed connection; our client sockets
keep the TLS error (`ClientContext.failure`), so a delivery failure can say that TLS failed and
why; pynetdicom's own traceback of that error is left out of the log. (The listener's side,
the handshake in each connection's own thread, is in service.ingest.scp.)
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from service.errors import ConfigError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


# --- listener -------------------------------------------------------------------------------


_LISTENER_SETTINGS = ("dicom_tls_cert_file", "dicom_tls_key_file", "dicom_tls_ca_file")


def server_context(cert_file: Path, key_file: Path, ca_file: Path | None = None, *,
                   names: tuple[str, str, str] = _LISTENER_SETTINGS) -> ssl.SSLContext:
    """The listener's context; with `ca_file`, peers must present a certificate it issued."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, cert_file, key_file, names[0], names[1])
    if ca_file is not None:
        _load_authorities(context, ca_file, names[2])
        context.verify_mode = ssl.CERT_REQUIRED
    return context


# --- sender ---------------------------------------------------------------------------------


class _ObservedClientSocket(ssl.SSLSocket):
    """Records the TLS error of a failed handshake, or of an alert that ends the connection
    later (TLS 1.3 servers refuse a client certificate after the client's handshake is done)."""

    def _record(self, error: BaseException) -> None:
        # Only ClientContext makes these sockets (its sslsocket_class).
        cast("ClientContext", self.context).record(error)

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError as error:  # the TCP connection exists: whatever fails here is TLS's doing
            self._record(error)
            raise

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            return super().recv(buflen, flags)
        except ssl.SSLError as error:
            self._record(error)
            raise


class ClientContext(ssl.SSLContext):
    """Client-side context remembering the first TLS failure of its connections."""

    sslsocket_class = _ObservedClientSocket
    failure: BaseException | None = None

    def record(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error


@dataclass(frozen=True)
class ClientTls:
    """TLS towards a peer: the peer's certificate is always verified (against `ca_file`, else
    the system's trusted CAs) and must name the host we connect to; `cert_file`/`key_file` are
    our certificate for peers that require one. `names` are the settings named in errors."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    names: tuple[str, str, str] = ("pacs_tls_ca_file", "pacs_tls_cert_file", "pacs_tls_key_file")

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(f"{self.names[1]} and {self.names[2]} go together: set both or neither")

    def context(self) -> ClientContext:
        """A fresh context per association: its `failure` belongs to that association."""
        context = ClientContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and its host name
        context.minimum_version = MINIMUM_VERSION
        if self.ca_file is not None:
            _load_authorities(context, self.ca_file, self.names[0])
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file is not None and self.key_file is not None:
            _load_chain(context, self.cert_file, self.key_file, self.names[1], self.names[2])
        return context


def describe_failure(error: BaseException) -> str:
    """A TLS error in words, for logs and delivery rows (never contains patient data)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason == "WRONG_VERSION_NUMBER":
        return "wrong version number (is the peer speaking TLS?)"
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.replace("_", " ").lower()
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return f"{type(error).__name__}: {error}"


# --- PEM files ------------------------------------------------------------------------------


def _readable(path: Path, setting: str, marker: bytes, what: str) -> None:
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{setting}: cannot read {path} ({error.strerror or type(error).__name__})") from None
    if marker not in text:
        raise ConfigError(f"{setting}: {path} holds no PEM {what}")


def _no_password() -> bytes:
    raise ConfigError("an encrypted private key cannot be used: the service cannot prompt for its password")


def _load_chain(context: ssl.SSLContext, cert_file: Path, key_file: Path, cert_name: str, key_name: str) -> None:
    _readable(cert_file, cert_name, b"-----BEGIN CERTIFICATE-----", "certificate")
    _readable(key_file, key_name, b"PRIVATE KEY-----", "private key")
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except ConfigError as error:
        raise ConfigError(f"{key_name}: {error}") from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{key_name}: the key in {key_file} does not belong to the certificate in "
                              f"{cert_name} ({cert_file})") from None
        raise ConfigError(f"{cert_name}/{key_name}: cannot use {cert_file} with {key_file} "
                          f"({describe_failure(error)})") from None


def _load_authorities(context: ssl.SSLContext, ca_file: Path, setting: str) -> None:
    _readable(ca_file, setting, b"-----BEGIN CERTIFICATE-----", "certificate")
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as error:
        raise ConfigError(f"{setting}: cannot use {ca_file} as CA certificates ({describe_failure(error)})") from None


# --- logging --------------------------------------------------------------------------------


def _without_tls_tracebacks(record: logging.LogRecord) -> bool:
    """pynetdicom logs a TLS error on a line of its own and then again with its traceback; the
    traceback says nothing more (and we report the error ourselves), so that record is dropped."""
    return not (record.exc_info and isinstance(record.exc_info[1], ssl.SSLError))


for _logger in ("pynetdicom.transport", "pynetdicom.dul"):
    logging.getLogger(_logger).addFilter(_without_tls_tracebacks)
