"""SMART client pieces checked against their specifications, and static bearer tokens, without a server."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from service.errors import ConfigError
from service.outputs.fhir_auth import BearerToken, BearerTokenFile, jwk_thumbprint, require_https
from service.secret_file import SecretFile

# RFC 7638 section 3.1: the example RSA key and its published SHA-256 thumbprint.
RFC7638_N = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
             "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAt"
             "aSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3X"
             "PksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _integer(base64url: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(base64url + "=" * (-len(base64url) % 4)), "big")


def test_default_key_id_is_the_rfc7638_thumbprint():
    key = rsa.RSAPublicNumbers(_integer("AQAB"), _integer(RFC7638_N)).public_key()
    assert jwk_thumbprint(key) == RFC7638_THUMBPRINT


@pytest.mark.parametrize("url", ["http://ehr.example/fhir", "ftp://ehr.example/token"])
def test_credentials_never_travel_in_clear(url):
    with pytest.raises(ConfigError, match="https"):
        require_https(url, "fhir_smart_token_url")


@pytest.mark.parametrize("url", ["https://ehr.example/fhir", "http://127.0.0.1:8080/fhir", "http://localhost/t"])
def test_https_or_loopback_is_accepted(url):
    require_https(url, "fhir_base_url")


def test_a_bearer_token_does_not_show_in_its_repr(tmp_path):
    (path := tmp_path / "token").write_text("s3cret")
    assert "s3cret" not in repr(BearerToken("s3cret"))
    assert "s3cret" not in repr(BearerTokenFile(SecretFile(path, "fhir_bearer_token_file", "s3cret")))


def test_a_refused_token_from_a_file_is_retried_one_given_in_the_configuration_is_not(tmp_path):
    """Nor does the error quote the token: it names the file the platform rotates."""
    (path := tmp_path / "token").write_text("s3cret")
    from_file = BearerTokenFile(SecretFile(path, "fhir_bearer_token_file", "s3cret"))
    given = BearerToken("s3cret")
    assert (from_file.renew("Bearer s3cret"), given.renew("Bearer s3cret")) == (False, False)
    retried, final = from_file.refusal("token revoked"), given.refusal("token revoked")
    assert (retried.permanent, final.permanent) == (False, True)
    assert f"fhir_bearer_token_file ({path})" in str(retried) and "read again at each attempt" in str(retried)
    assert "s3cret" not in str(retried) + str(final)
    path.write_text("rotated")
    assert from_file.renew("Bearer s3cret") and from_file.header() == "Bearer rotated"
