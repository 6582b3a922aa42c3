"""The configured prior sources, in the order prior_providers names them."""

from __future__ import annotations

from service.config import Config
from service.outputs.dicomweb_access import DicomwebAccess
from service.priors.dicomweb import DicomwebProvider
from service.priors.dimse import DimseProvider
from service.priors.files import FilesProvider
from service.priors.source import PriorProvider
from service.tls import ClientTls


def build_providers(config: Config, dimse_tls: ClientTls | None = None) -> list[PriorProvider]:
    """One provider per prior_providers entry (empty: priors off). `dimse_tls` is the TLS the
    DIMSE peer needs: the PACS's (pacs_tls_*) when the peer is the PACS, as by default."""
    providers: list[PriorProvider] = []
    host, port, called_ae = config.prior_dimse_peer
    for name in config.prior_providers:  # Config has checked that each has its address
        if name == "dicomweb" and config.prior_dicomweb_url:
            pacs = DicomwebAccess.configured(config, config.prior_dicomweb_url, "prior_dicomweb")
            providers.append(DicomwebProvider(pacs, config.prior_timeout_seconds))
        elif name == "dimse" and host:
            providers.append(DimseProvider(host, port, called_ae, config.dicom_ae_title,
                                           config.prior_timeout_seconds, dimse_tls))
        elif name == "directory" and config.prior_directory:
            providers.append(FilesProvider([config.prior_directory], archive=True))
    return providers
