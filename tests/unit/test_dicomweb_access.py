"""What a DICOMweb client built from the settings sends: the bearer token or the HTTP Basic
credentials, never both, and nothing when none is set; a credential from a file as the file is
at each request, so that a client kept for as long as the worker runs (the priors source's)
sends a rotated one. Orthanc (tests/integration/test_stow.py, test_priors.py) checks Basic
credentials for real; no server here checks bearer tokens, so this records the requests a
client makes on a local HTTP server that answers an empty QIDO-RS, or a STOW-RS that refuses
a credential while its file is being rotated (Orthanc cannot rotate our file mid-request)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from service.config import load_config
from service.errors import DeliveryError
from service.outputs.dicomweb_access import DicomwebAccess
from service.outputs.stow import store_instance
from tests.support.http_server import QuietHandler, serving
from tests.support.secret_volume import SecretVolume


class _Recording(QuietHandler):
    authorizations: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        _Recording.authorizations.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")


@pytest.fixture
def server_url() -> Iterator[str]:
    _Recording.authorizations = []
    with serving(_Recording) as base:
        yield f"{base}/dicom-web"


@pytest.mark.parametrize(("credentials", "header"), [
    ({}, None),
    ({"bearer_token": "eyJ.s3cret"}, "Bearer eyJ.s3cret"),
    ({"basic_auth": "rcds:s3cret:pass"}, "Basic " + base64.b64encode(b"rcds:s3cret:pass").decode()),
    ({"basic_auth": "rcds:s3cret:päss€"}, "Basic " + base64.b64encode("rcds:s3cret:päss€".encode()).decode()),  # RFC 7617: UTF-8
])
def test_the_client_sends_the_configured_credential(server_url: str, credentials: dict[str, str],
                                                    header: str | None) -> None:
    access = DicomwebAccess(server_url, **credentials)
    assert access.client(timeout_s=5).search_for_studies() == []
    assert _Recording.authorizations == [header]
    assert "s3cret" not in repr(access)


def test_a_client_is_never_given_both_credentials() -> None:
    with pytest.raises(ValueError, match="not both"):
        DicomwebAccess("https://pacs.example/dicom-web", bearer_token="t", basic_auth="rcds:s3cret")


def _basic(credential: str) -> str:
    return "Basic " + base64.b64encode(credential.encode()).decode()


@pytest.mark.parametrize(("credential", "old", "new", "headers"), [
    ("BEARER_TOKEN", "eyJ.old-s3cret", "eyJ.new-s3cret", ["Bearer eyJ.old-s3cret", "Bearer eyJ.new-s3cret"]),
    ("BASIC_AUTH", "rcds:old-s3cret", "rcds:new-s3cret€", [_basic("rcds:old-s3cret"), _basic("rcds:new-s3cret€")]),
])
def test_one_client_sends_a_rotated_credential_file_from_the_next_request_on(
        server_url: str, tmp_path: Path, credential: str, old: str, new: str, headers: list[str]) -> None:
    """As the priors source does: the access configured and its client built once, at start."""
    secret = SecretVolume(tmp_path / "prior-dicomweb", "credential", old)
    access = DicomwebAccess.configured(load_config(environ={
        "RCDS_PRIOR_PROVIDERS": "dicomweb", "RCDS_PRIOR_DICOMWEB_URL": server_url,
        f"RCDS_PRIOR_DICOMWEB_{credential}_FILE": str(secret.path)}), server_url, "prior_dicomweb")
    client = access.client(timeout_s=5)
    client.search_for_studies()
    secret.rotate(new)
    client.search_for_studies()
    assert _Recording.authorizations == headers
    assert access.credential_file == f"prior_dicomweb_{credential.lower()}_file"


class _RotatedMidway(QuietHandler):
    """A STOW-RS endpoint taking only `accepted`; on the request numbered `rotate_at`, the
    Secret is swapped to it while the request is under way, and that request refused."""

    secret: SecretVolume
    accepted = "Bearer new-s3cret"
    rotate_at = 0
    authorizations: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _RotatedMidway.authorizations.append(self.headers.get("Authorization"))
        if len(_RotatedMidway.authorizations) == _RotatedMidway.rotate_at:
            _RotatedMidway.secret.rotate(_RotatedMidway.accepted.removeprefix("Bearer "))
        self.send_response(200 if self.headers.get("Authorization") == _RotatedMidway.accepted else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def sr_file(tmp_path: Path) -> Path:
    """Any DICOM instance will do: the endpoint reads no further than the header."""
    dataset = Dataset()
    dataset.SOPClassUID, dataset.SOPInstanceUID, dataset.StudyInstanceUID = (
        "1.2.840.10008.5.1.4.1.1.88.34", generate_uid(), generate_uid())
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.save_as(path := tmp_path / "sr.dcm", enforce_file_format=True)
    return path


def test_stow_rs_refused_a_credential_from_a_file_retries_and_sends_a_rotated_one_at_once(
        tmp_path: Path, sr_file: Path) -> None:
    """A 401 to the file's credential is not final (the file may be about to change): the
    error names the file, not the credential. When the file changed while the refused request
    was under way, the instance is sent again at once with the new credential."""
    _RotatedMidway.secret = SecretVolume(tmp_path / "stow-token", "token", "old-s3cret")
    _RotatedMidway.authorizations, _RotatedMidway.rotate_at = [], 2
    with serving(_RotatedMidway) as base:
        archive = DicomwebAccess.configured(load_config(environ={
            "RCDS_STOW_URL": f"{base}/dicom-web", "RCDS_STOW_BEARER_TOKEN_FILE": str(_RotatedMidway.secret.path)}),
            f"{base}/dicom-web", "stow")
        with pytest.raises(DeliveryError) as refused:
            store_instance(sr_file, archive)
        assert not refused.value.permanent and "s3cret" not in str(refused.value)
        assert str(refused.value) == ("STOW-RS answered HTTP 401: the archive refused the credential from "
                                      "stow_bearer_token_file, which is read again at each attempt")
        store_instance(sr_file, archive)
    assert _RotatedMidway.authorizations == ["Bearer old-s3cret", "Bearer old-s3cret", "Bearer new-s3cret"]


def test_stow_rs_refused_a_credential_given_in_the_configuration_gives_up(sr_file: Path) -> None:
    _RotatedMidway.authorizations, _RotatedMidway.rotate_at = [], 0
    with serving(_RotatedMidway) as base, pytest.raises(DeliveryError) as refused:
        store_instance(sr_file, DicomwebAccess(f"{base}/dicom-web", bearer_token="old-s3cret"))
    assert refused.value.permanent and "stow_bearer_token" in str(refused.value)
    assert _RotatedMidway.authorizations == ["Bearer old-s3cret"]
