"""The certificates and keys the ingest side uses, loaded at start: a bad file stops the start
with a ConfigError naming its setting, not the first association or delivery that needs it.

Apart from the ingest role so that serve checks them before it starts its scorer child, without
importing the listener, the worker and the output builders first (service.roles.serve).
"""

from __future__ import annotations

import ssl

from service.config import Config
from service.outputs.destinations import pacs_tls
from service.tls import server_context


def _listener_tls(config: Config) -> ssl.SSLContext | None:
    """The listener's TLS context when DICOM TLS is configured; ConfigError for unusable files."""
    cert_file, key_file = config.dicom_tls_cert_file, config.dicom_tls_key_file
    if not config.dicom_tls:
        return None
    assert cert_file is not None and key_file is not None  # Config requires the key with the certificate
    return server_context(cert_file, key_file, config.dicom_tls_ca_file)


def load_tls(config: Config) -> ssl.SSLContext | None:
    """Load every configured certificate and key, so that a bad file stops the start
    (ConfigError naming the setting); returns the listener's context."""
    tls = pacs_tls(config)
    if tls is not None:
        tls.context()
    return _listener_tls(config)
