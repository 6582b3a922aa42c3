"""The gRPC channel between ingest and the scorer: plaintext, TLS or mutual TLS.

Requests carry image crops and ROI names (free text that can hold patient data), so on a network
the channel is meant to be encrypted: the scorer role serves TLS with scorer_tls_cert_file/
key_file (and requires client certificates with scorer_tls_client_ca_file); ingest and `serve`
connect with scorer_tls (verifying the scorer against scorer_tls_ca_file, presenting
scorer_tls_client_cert_file/key_file). gRPC itself does the TLS (1.2 or later).

The files are checked with service.tls's loaders first, because gRPC reports an unusable
certificate or key only at the first connection, with no setting named; a bad file is a
ConfigError naming the setting, at start. Files are read once: renewing a certificate needs a
restart (in Kubernetes, a rollout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from service.config import Config
from service.tls import ClientTls, server_context

_SERVER_SETTINGS = ("scorer_tls_cert_file", "scorer_tls_key_file", "scorer_tls_client_ca_file")
_CLIENT_SETTINGS = ("scorer_tls_ca_file", "scorer_tls_client_cert_file", "scorer_tls_client_key_file")

ChannelOptions = Sequence[tuple[str, object]]


@dataclass(frozen=True)
class ChannelTls:
    """What every channel to the scorer needs for TLS: credentials built from files read at
    start, and the name the scorer's certificate must carry when it is not the target's host."""

    credentials: grpc.ChannelCredentials
    server_name: str | None = None


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """The scorer role's TLS credentials when scorer_tls_cert_file is set, else None (plaintext);
    with scorer_tls_client_ca_file, clients without a certificate issued by it are refused."""
    if config.scorer_tls_cert_file is None or config.scorer_tls_key_file is None:
        return None
    server_context(config.scorer_tls_cert_file, config.scorer_tls_key_file, config.scorer_tls_client_ca_file,
                   names=_SERVER_SETTINGS)
    client_ca = config.scorer_tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(config.scorer_tls_key_file.read_bytes(), config.scorer_tls_cert_file.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca is not None else None,
        require_client_auth=client_ca is not None,
    )


def channel_tls(config: Config) -> ChannelTls | None:
    """TLS towards the scorer when scorer_tls is on, else None (plaintext)."""
    if not config.scorer_tls:
        return None
    ClientTls(config.scorer_tls_ca_file, config.scorer_tls_client_cert_file, config.scorer_tls_client_key_file,
              names=_CLIENT_SETTINGS).context()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(config.scorer_tls_ca_file),
        private_key=_read(config.scorer_tls_client_key_file),
        certificate_chain=_read(config.scorer_tls_client_cert_file),
    )
    return ChannelTls(credentials, config.scorer_tls_server_name)


def open_channel(target: str, tls: ChannelTls | None, options: ChannelOptions = ()) -> grpc.Channel:
    """A channel to the scorer: the one way every caller (scoring client, readiness check, `serve`
    waiting for its child) opens it, so all of them speak what the scorer speaks."""
    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    if tls.server_name:
        options = [*options, ("grpc.ssl_target_name_override", tls.server_name)]
    return grpc.secure_channel(target, tls.credentials, options=list(options))


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None
