"""The destinations the configuration asks for, each with the artefact it takes.

Delivery rows are keyed by destination name, so the names are part of the outbox's format:
an outbox database written before must stay deliverable.
"""

from __future__ import annotations

from pathlib import Path

from service.config import load_config
from service.outputs.artefacts import Artefact
from service.outputs.destinations import EhrByFhir, PacsByCStore, configured_destinations
from service.outputs.fhir_auth import BearerToken
from service.tls import ClientTls


def test_nothing_configured_means_no_destination() -> None:
    assert configured_destinations(load_config(environ={})) == ()


def test_pacs_takes_the_sr_and_the_ehr_the_bundle() -> None:
    config = load_config(environ={"RCDS_PACS_HOST": "pacs.example", "RCDS_PACS_PORT": "2762",
                                  "RCDS_PACS_AE_TITLE": "ARCHIVE", "RCDS_DICOM_AE_TITLE": "RCDS",
                                  "RCDS_FHIR_BASE_URL": "https://ehr.example/fhir"})
    pacs, ehr = configured_destinations(config)
    assert (pacs.name, pacs.artefact, ehr.name, ehr.artefact) == ("pacs", Artefact.SR, "fhir", Artefact.FHIR_BUNDLE)
    assert pacs == PacsByCStore("pacs.example", 2762, "ARCHIVE", "RCDS", tls=None)
    assert ehr == EhrByFhir("https://ehr.example/fhir", authorization=None)


def test_only_the_configured_ones_with_their_credentials(tmp_path: Path) -> None:
    (ca := tmp_path / "ca.pem").write_text("")
    (pacs,) = configured_destinations(load_config(environ={
        "RCDS_PACS_HOST": "pacs.example", "RCDS_PACS_TLS": "true", "RCDS_PACS_TLS_CA_FILE": str(ca)}))
    assert isinstance(pacs, PacsByCStore) and pacs.tls == ClientTls(ca_file=ca)

    (ehr,) = configured_destinations(load_config(environ={
        "RCDS_FHIR_BASE_URL": "https://ehr.example/fhir", "RCDS_FHIR_BEARER_TOKEN": "s3cret"}))
    assert isinstance(ehr, EhrByFhir) and isinstance(ehr.authorization, BearerToken)
    assert ehr.artefact == Artefact.FHIR_BUNDLE
