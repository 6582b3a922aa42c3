"""Where results go: each destination is a small object (its name, the artefact it takes, how it
sends one file), and `configured_destinations` builds those the configuration asks for.

The outbox keys its delivery rows by a destination's name, so names never change ("pacs" and
"fhir" rows in existing outbox databases stay deliverable); the worker gives each destination
the artefact it says it takes. A new destination (DICOMweb STOW-RS, say) is a class here and a
line in `configured_destinations` (PacsByStowRs and the tumour-board page's PACS destinations
were added that way): the outbox and the worker do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from service.config import Config
from service.outputs.artefacts import Artefact
from service.outputs.dicomweb_access import DicomwebAccess
from service.outputs.ehr import post_bundle
from service.outputs.fhir_auth import (Authorization, BearerToken, BearerTokenFile, SmartBackendServices,
                                       require_https)
from service.outputs.pacs import store_one
from service.outputs.stow import store_instance
from service.secret_file import SecretFile
from service.tls import ClientTls


class Destination(Protocol):
    """A peer that takes one artefact of every result."""

    @property
    def name(self) -> str:
        """The key of its delivery rows in the outbox: stable across versions."""
        ...

    @property
    def artefact(self) -> Artefact:
        """Which of a result's files it takes."""
        ...

    @property
    def peer(self) -> str:
        """The peer it reaches (not empty). Destinations of one peer share an outbox lane
        (service.outputs.outbox): the peer sees one delivery of ours at a time, in the order they
        fall due (a result's SR before its page, unless the SR waits out a retry), as when one
        thread delivered everything."""
        ...

    def send(self, path: Path) -> None:
        """Deliver one file; DeliveryError (permanent when retrying cannot help) when it was not taken."""
        ...


@dataclass(frozen=True)
class PacsByCStore:
    """The PACS, by DICOM C-STORE (TLS when configured): it takes the SR."""

    host: str
    port: int
    called_ae: str
    calling_ae: str
    tls: ClientTls | None = None
    name: ClassVar[str] = "pacs"
    artefact: ClassVar[Artefact] = Artefact.SR
    peer: ClassVar[str] = "pacs"  # also its page's (PacsSummaryByCStore)

    def send(self, path: Path) -> None:
        store_one(path, self.host, self.port, self.called_ae, self.calling_ae, tls=self.tls)


@dataclass(frozen=True)
class PacsSummaryByCStore(PacsByCStore):
    """The same PACS, by C-STORE, for the tumour-board page's Encapsulated PDF. Its own delivery
    rows: a PACS that refuses documents (or is slow with them) never holds up or fails the SR,
    whose delivery alone decides reconciliation."""

    name: ClassVar[str] = "pacs-summary"
    artefact: ClassVar[Artefact] = Artefact.SUMMARY_DOCUMENT


@dataclass(frozen=True)
class EhrByFhir:
    """The EHR, by a FHIR transaction POST to its base URL: it takes the Bundle."""

    base_url: str
    authorization: Authorization | None = None
    timeout_s: float = 60.0
    tls: ClientTls | None = None  # the EHR's CA (fhir_tls_ca_file); None: the system's CAs
    name: ClassVar[str] = "fhir"
    artefact: ClassVar[Artefact] = Artefact.FHIR_BUNDLE
    peer: ClassVar[str] = "fhir"

    def send(self, path: Path) -> None:
        post_bundle(path, self.base_url, self.authorization, timeout_s=self.timeout_s, tls=self.tls)


@dataclass(frozen=True)
class PacsByStowRs:
    """A PACS or archive by DICOMweb STOW-RS to its base URL: it takes the SR. Its own name, so
    that a site can send the SR both by C-STORE and by STOW-RS (say, PACS and a research archive)."""

    archive: DicomwebAccess
    timeout_s: float = 60.0
    name: ClassVar[str] = "pacs-stow"
    artefact: ClassVar[Artefact] = Artefact.SR
    peer: ClassVar[str] = "pacs-stow"  # also its page's (PacsSummaryByStowRs)

    def send(self, path: Path) -> None:
        store_instance(path, self.archive, self.timeout_s)


@dataclass(frozen=True)
class PacsSummaryByStowRs(PacsByStowRs):
    """The same archive, by STOW-RS, for the tumour-board page's Encapsulated PDF (own rows, as
    PacsSummaryByCStore)."""

    name: ClassVar[str] = "pacs-stow-summary"
    artefact: ClassVar[Artefact] = Artefact.SUMMARY_DOCUMENT


def configured_destinations(config: Config) -> tuple[Destination, ...]:
    """The PACS when `pacs_host` is set, a DICOMweb archive when `stow_url` is (each for the SR
    and for the tumour-board page), the EHR when `fhir_base_url` is; credentials are loaded now,
    so a bad key or CA file stops the start rather than failing every delivery."""
    destinations: list[Destination] = []
    if config.pacs_host:
        pacs = PacsByCStore(config.pacs_host, config.pacs_port, config.pacs_ae_title, config.dicom_ae_title,
                            pacs_tls(config))
        destinations += [pacs, PacsSummaryByCStore(**vars(pacs))]
    if config.stow_url:
        stow = stow_destination(config, config.stow_url)
        destinations += [stow, PacsSummaryByStowRs(**vars(stow))]
    if config.fhir_base_url:
        destinations.append(EhrByFhir(config.fhir_base_url, fhir_authorization(config), tls=fhir_tls(config)))
    return tuple(destinations)


def stow_destination(config: Config, url: str) -> PacsByStowRs:
    """STOW-RS to `url` with the configured credentials and CA file (checked now)."""
    return PacsByStowRs(DicomwebAccess.configured(config, url, "stow"))


def pacs_tls(config: Config) -> ClientTls | None:
    """TLS towards the PACS when configured; its files are loaded for each association."""
    if not config.pacs_tls:
        return None
    return ClientTls(config.pacs_tls_ca_file, config.pacs_tls_cert_file, config.pacs_tls_key_file)


def fhir_tls(config: Config) -> ClientTls | None:
    """The EHR's CA (fhir_tls_ca_file) for the FHIR server and its SMART token endpoint; checked
    now, so a bad file stops the start. None: the system's CAs."""
    if config.fhir_tls_ca_file is None:
        return None
    tls = ClientTls(config.fhir_tls_ca_file, names=("fhir_tls_ca_file", "", ""))
    tls.context()
    return tls


def fhir_authorization(config: Config) -> Authorization | None:
    """The configured EHR authorisation (the private key is loaded now, so a bad one stops the
    start); a token from fhir_bearer_token_file follows its file."""
    if config.fhir_smart_client_id and config.fhir_smart_private_key_file:
        return SmartBackendServices(
            client_id=config.fhir_smart_client_id, private_key_file=config.fhir_smart_private_key_file,
            scope=config.fhir_smart_scope, fhir_base_url=config.fhir_base_url or "",
            token_url=config.fhir_smart_token_url, key_id=config.fhir_smart_key_id, tls=fhir_tls(config))
    token = config.credential("fhir_bearer_token")
    if token is None:
        return None
    require_https(config.fhir_base_url or "", "fhir_base_url (with a bearer token)")
    return BearerTokenFile(token) if isinstance(token, SecretFile) else BearerToken(token)
