"""Credentials from files (*_file settings), as a Kubernetes Secret mounted as a volume or a
Docker secret hands them out: read at start into the setting, whitespace around them removed (a
file written by `echo` ends in a newline); the destinations built from the configuration then
send them, read again when the file changes (service.secret_file, tests/unit/test_secret_file.py).
A file that cannot give a credential stops the start naming the setting, never quoting the
credential."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from service.config import SECRET_FILES, load_config
from service.errors import ConfigError
from service.outputs.destinations import PacsByStowRs, configured_destinations, fhir_authorization
from service.outputs.fhir_auth import BearerTokenFile
from service.secret_file import SecretFile

SECRET = "eyJhbGciOi.s3cret-token"
TARGETS = {"RCDS_FHIR_BASE_URL": "https://ehr.example/fhir", "RCDS_STOW_URL": "https://pacs.example/dicom-web"}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"{SECRET}\n")
    return path


def test_the_bearer_tokens_are_read_from_their_files_and_sent(token_file: Path) -> None:
    config = load_config(environ={**TARGETS, "RCDS_FHIR_BEARER_TOKEN_FILE": str(token_file),
                                  "RCDS_STOW_BEARER_TOKEN_FILE": str(token_file)})
    assert (config.fhir_bearer_token, config.stow_bearer_token) == (SECRET, SECRET)
    authorization = fhir_authorization(config)
    assert authorization is not None and authorization.header() == f"Bearer {SECRET}"
    stows = [d for d in configured_destinations(config) if isinstance(d, PacsByStowRs)]  # the SR's and the page's
    assert stows and all(stow.archive.authorization() == f"Bearer {SECRET}" for stow in stows)


def test_a_credential_from_a_file_follows_the_file_one_given_in_the_configuration_is_as_given(
        token_file: Path) -> None:
    config = load_config(environ={**TARGETS, "RCDS_FHIR_BEARER_TOKEN_FILE": str(token_file),
                                  "RCDS_STOW_BEARER_TOKEN": "given"})
    followed = config.credential("fhir_bearer_token")
    assert isinstance(followed, SecretFile) and (followed.path, followed.setting) == (token_file,
                                                                                     "fhir_bearer_token_file")
    assert (config.credential("stow_bearer_token"), config.credential("stow_basic_auth")) == ("given", None)
    authorization = fhir_authorization(config)
    assert isinstance(authorization, BearerTokenFile)
    token_file.write_text("rotated-token\n")
    assert authorization.header() == "Bearer rotated-token"


def test_the_dicomweb_basic_credentials_are_read_from_their_files(tmp_path: Path) -> None:
    """user:password files for the archive (STOW-RS) and the PACS of the priors (QIDO-RS, WADO-RS)."""
    (basic := tmp_path / "basic").write_text("rcds:s3cret:pass\n")
    config = load_config(environ={**TARGETS, "RCDS_PRIOR_DICOMWEB_URL": "https://pacs.example/dicom-web",
                                  "RCDS_PRIOR_PROVIDERS": "dicomweb",
                                  "RCDS_STOW_BASIC_AUTH_FILE": str(basic),
                                  "RCDS_PRIOR_DICOMWEB_BASIC_AUTH_FILE": str(basic)})
    assert config.stow_basic_auth == config.prior_dicomweb_basic_auth == "rcds:s3cret:pass"
    stows = [d for d in configured_destinations(config) if isinstance(d, PacsByStowRs)]
    basic = "Basic " + base64.b64encode(b"rcds:s3cret:pass").decode()
    assert stows and all(stow.archive.authorization() == basic for stow in stows)
    assert "s3cret" not in repr(stows) and "s3cret" not in repr(config)


def test_every_file_setting_names_an_existing_setting() -> None:
    config = load_config(environ={})
    for file_setting, setting in SECRET_FILES.items():
        assert file_setting == f"{setting}_file" and hasattr(config, setting) and hasattr(config, file_setting)


@pytest.mark.parametrize(("content", "message"), [
    (None, "fhir_bearer_token_file: cannot read .* \\(No such file or directory\\)"),
    ("  \n", "fhir_bearer_token_file: .* is empty"),
    (b"\xff\xfe\x00token", "fhir_bearer_token_file: cannot read"),
])
def test_a_file_that_gives_no_credential_stops_the_start(tmp_path: Path, content: str | bytes | None,
                                                         message: str) -> None:
    path = tmp_path / "token"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(environ={**TARGETS, "RCDS_FHIR_BEARER_TOKEN_FILE": str(path)})


def test_a_setting_and_its_file_are_not_both_set(token_file: Path) -> None:
    with pytest.raises(ConfigError, match="set stow_bearer_token or stow_bearer_token_file, not both") as raised:
        load_config(environ={**TARGETS, "RCDS_STOW_BEARER_TOKEN": "another", "RCDS_STOW_BEARER_TOKEN_FILE": str(token_file)})
    assert SECRET not in str(raised.value) and "another" not in str(raised.value)


def test_a_token_file_without_its_destination_is_refused(token_file: Path) -> None:
    with pytest.raises(ConfigError, match="stow_url"):
        load_config(environ={"RCDS_STOW_BEARER_TOKEN_FILE": str(token_file)})
