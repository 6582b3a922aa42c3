"""The destinations the configuration asks for, each with the artefact it takes.

Delivery rows are keyed by destination name, so the names are part of the outbox's format:
an outbox database written before must stay deliverable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from service.config import load_config
from service.errors import ConfigError, DeliveryError
from service.outputs.artefacts import Artefact
from service.outputs.destinations import (
    EhrByFhir,
    PacsByCStore,
    PacsByStowRs,
    PacsSummaryByCStore,
    PacsSummaryByStowRs,
    configured_destinations,
)
from service.outputs.dicomweb_access import DicomwebAccess
from service.outputs.fhir_auth import BearerToken
from service.outputs.stow import _check_answer, store_instance
from service.tls import ClientTls
from tests.support.certs import make_authority


def test_nothing_configured_means_no_destination() -> None:
    assert configured_destinations(load_config(environ={})) == ()


def test_pacs_takes_the_sr_and_the_summary_and_the_ehr_the_bundle() -> None:
    """The tumour-board page's Encapsulated PDF goes to the same PACS under its own name, so
    its delivery rows are its own: a PACS refusing documents leaves the SR's delivery alone."""
    config = load_config(environ={"RCDS_PACS_HOST": "pacs.example", "RCDS_PACS_PORT": "2762",
                                  "RCDS_PACS_AE_TITLE": "ARCHIVE", "RCDS_DICOM_AE_TITLE": "RCDS",
                                  "RCDS_FHIR_BASE_URL": "https://ehr.example/fhir"})
    pacs, summary, ehr = configured_destinations(config)
    assert [(d.name, d.artefact) for d in (pacs, summary, ehr)] == [
        ("pacs", Artefact.SR), ("pacs-summary", Artefact.SUMMARY_DOCUMENT), ("fhir", Artefact.FHIR_BUNDLE)]
    assert pacs == PacsByCStore("pacs.example", 2762, "ARCHIVE", "RCDS", tls=None)
    assert summary == PacsSummaryByCStore("pacs.example", 2762, "ARCHIVE", "RCDS", tls=None)
    assert ehr == EhrByFhir("https://ehr.example/fhir", authorization=None)


def test_only_the_configured_ones_with_their_credentials(tmp_path: Path) -> None:
    (ca := tmp_path / "ca.pem").write_text("")
    pacs, summary = configured_destinations(load_config(environ={
        "RCDS_PACS_HOST": "pacs.example", "RCDS_PACS_TLS": "true", "RCDS_PACS_TLS_CA_FILE": str(ca)}))
    assert isinstance(pacs, PacsByCStore) and pacs.tls == ClientTls(ca_file=ca)
    assert isinstance(summary, PacsSummaryByCStore) and summary.tls == ClientTls(ca_file=ca)

    (ehr,) = configured_destinations(load_config(environ={
        "RCDS_FHIR_BASE_URL": "https://ehr.example/fhir", "RCDS_FHIR_BEARER_TOKEN": "s3cret"}))
    assert isinstance(ehr, EhrByFhir) and isinstance(ehr.authorization, BearerToken)
    assert ehr.artefact == Artefact.FHIR_BUNDLE


def test_stow_takes_the_sr_and_the_summary_under_their_own_names(tmp_path: Path) -> None:
    """Its own delivery rows: a site may send the SR by C-STORE and by STOW-RS at once."""
    ca = make_authority(tmp_path, "Archive").cert
    pacs, _, stow, summary = configured_destinations(load_config(environ={
        "RCDS_PACS_HOST": "pacs.example", "RCDS_STOW_URL": "https://archive.example/dicom-web",
        "RCDS_STOW_BEARER_TOKEN": "s3cret", "RCDS_STOW_TLS_CA_FILE": str(ca)}))
    assert (pacs.name, stow.name, stow.artefact) == ("pacs", "pacs-stow", Artefact.SR)
    assert (summary.name, summary.artefact) == ("pacs-stow-summary", Artefact.SUMMARY_DOCUMENT)
    archive = DicomwebAccess("https://archive.example/dicom-web", bearer_token="s3cret", ca_file=ca)
    assert stow == PacsByStowRs(archive) and summary == PacsSummaryByStowRs(archive)
    assert "s3cret" not in repr(stow) and "s3cret" not in repr(summary)


@pytest.mark.parametrize(("environ", "words"), [
    ({"RCDS_STOW_URL": "archive.example/dicom-web"}, "http:// or https://"),
    ({"RCDS_STOW_BEARER_TOKEN": "s3cret"}, "stow_url is not"),
    ({"RCDS_STOW_TLS_CA_FILE": "/etc/ca.pem"}, "stow_url is not"),
    ({"RCDS_STOW_BASIC_AUTH": "rcds:s3cret"}, "stow_url is not"),
    ({"RCDS_STOW_URL": "https://a.example/dicom-web", "RCDS_STOW_BASIC_AUTH": "rcds:s3cret",
      "RCDS_STOW_BEARER_TOKEN": "t"}, "stow_bearer_token or stow_basic_auth, not both"),
    ({"RCDS_STOW_URL": "https://a.example/dicom-web", "RCDS_STOW_BASIC_AUTH": "rcds"}, "user:password"),
    ({"RCDS_STOW_URL": "https://a.example/dicom-web", "RCDS_STOW_BASIC_AUTH": ":s3cret"}, "user:password"),
    ({"RCDS_STOW_URL": "https://a.example/dicom-web", "RCDS_STOW_BASIC_AUTH": "rcds:"}, "user:password"),
    ({"RCDS_PRIOR_DICOMWEB_BASIC_AUTH": "rcds:s3cret"}, "prior_dicomweb_url is not"),
    ({"RCDS_PRIOR_DICOMWEB_TLS_CA_FILE": "/etc/ca.pem"}, "prior_dicomweb_url is not"),
    ({"RCDS_PRIOR_DICOMWEB_URL": "https://pacs.example/dicom-web", "RCDS_PRIOR_DICOMWEB_BASIC_AUTH": "rcds:s3cret",
      "RCDS_PRIOR_DICOMWEB_BEARER_TOKEN": "t"}, "prior_dicomweb_bearer_token or prior_dicomweb_basic_auth, not both"),
    ({"RCDS_STOW_URL": "https://a.example/dicom-web", "RCDS_STOW_BASIC_AUTH": " rcds:s3cret"}, "user:password"),
    ({"RCDS_PRIOR_DICOMWEB_URL": "https://pacs.example/dicom-web", "RCDS_PRIOR_DICOMWEB_BASIC_AUTH": "rcds:s3cret"},
     "prior_dicomweb_basic_auth set but prior_providers has no dicomweb"),
    ({"RCDS_PRIOR_PROVIDERS": "dicomweb", "RCDS_PRIOR_DICOMWEB_URL": "http://rcds:s3cret@pacs.example:8042/dicom-web"},
     "prior_dicomweb_url must not hold credentials"),
    ({"RCDS_STOW_URL": "https://rcds@archive.example/dicom-web"}, "stow_url must not hold credentials"),
    ({"RCDS_FHIR_BASE_URL": "https://rcds:s3cret@ehr.example/fhir"}, "fhir_base_url must not hold credentials"),
    ({"RCDS_FHIR_BASE_URL": "https://ehr.example/fhir", "RCDS_FHIR_SMART_TOKEN_URL": "https://u:p@ehr.example/token"},
     "fhir_smart_token_url must not hold credentials"),
])
def test_stow_settings_are_checked_at_start(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(environ=environ)


def test_stow_credentials_are_checked_at_start(tmp_path: Path) -> None:
    """A token over plain http, or a CA file that holds no certificate, stops the start."""
    for credential in ("RCDS_STOW_BEARER_TOKEN", "RCDS_STOW_BASIC_AUTH"):
        with pytest.raises(ConfigError, match="stow_url .* must be an https URL"):
            configured_destinations(load_config(environ={
                "RCDS_STOW_URL": "http://archive.example/dicom-web", credential: "rcds:s3cret"}))
    (not_a_ca := tmp_path / "ca.pem").write_text("hello")
    with pytest.raises(ConfigError, match="stow_tls_ca_file"):
        configured_destinations(load_config(environ={
            "RCDS_STOW_URL": "https://archive.example/dicom-web", "RCDS_STOW_TLS_CA_FILE": str(not_a_ca)}))


def test_a_file_that_is_not_dicom_is_not_sent_again(tmp_path: Path) -> None:
    """Nothing is sent (the URL has no listener): no retry can make the file DICOM."""
    (broken := tmp_path / "sr.dcm").write_bytes(b"not dicom")
    with pytest.raises(DeliveryError) as raised:
        store_instance(broken, DicomwebAccess("http://127.0.0.1:9/dicom-web"))
    assert raised.value.permanent


@pytest.mark.parametrize(("reason", "permanent"), [(0xC000, True), (0xA900, True), (0xA700, False), (0xA7FF, False)])
def test_an_instance_listed_as_failed_is_not_delivered(reason: int, permanent: bool) -> None:
    """A 2xx Store Instances Response can still list the instance as failed (PS3.18 Table
    10.5.3-1): the archive's failure reason decides; A7xx (out of resources) is retried.
    Built by hand: Orthanc answers every refusal we can provoke with a 4xx instead."""
    failed = Dataset()
    failed.ReferencedSOPClassUID, failed.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.3"
    failed.FailureReason = reason
    answer = Dataset()
    answer.FailedSOPSequence = [failed]
    with pytest.raises(DeliveryError, match=f"{reason:04X}H") as raised:
        _check_answer(answer)
    assert raised.value.permanent is permanent
    _check_answer(Dataset())  # nothing failed: delivered
