"""Throw-away keys for the tests: a PKI for DICOM TLS (CAs, server and client certificates) and
bare key pairs for SMART client assertions, as PEM files.

Made with the `cryptography` package (a dependency of the service). TLS keys are EC P-256 (fast to generate, accepted by OpenSSL's and dcmtk's default
security levels); certificates are valid from an hour ago for a day, so clock skew between the
test processes does not matter.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_NAMES = ("localhost", "127.0.0.1")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A certificate authority that can issue server and client certificates."""

    name: str
    cert: Path
    key: Path
    _key: ec.EllipticCurvePrivateKey
    _certificate: x509.Certificate

    def issue(self, directory: Path, common_name: str, *, server: bool = False,
              names: tuple[str, ...] = LOCAL_NAMES) -> KeyPair:
        """A leaf certificate: `server` ones carry `names` as subjectAltName (DNS or IP)."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _builder(common_name, key).issuer_name(self._certificate.subject)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                                            critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        stem = directory / common_name.lower().replace(" ", "-")
        return KeyPair(_write_cert(stem.with_suffix(".crt"), certificate), _write_key(stem.with_suffix(".key"), key))


def make_authority(directory: Path, name: str) -> Authority:
    """A self-signed CA written to `directory`/`name`-ca.crt (and .key)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(f"{name} Test CA", key).issuer_name(_subject(f"{name} Test CA"))
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                      data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                      encipher_only=False, decipher_only=False), critical=True)
    certificate = builder.sign(key, hashes.SHA256())
    stem = directory / f"{name.lower()}-ca"
    return Authority(name, _write_cert(stem.with_suffix(".crt"), certificate), _write_key(stem.with_suffix(".key"), key),
                     key, certificate)


def _subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "radiomics-cds tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(common_name: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_subject(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_cert(path: Path, certificate: x509.Certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def write_key_pair(directory: Path, name: str, key: PrivateKey) -> tuple[Path, Path]:
    """`key` as `name`.key.pem (private, PKCS#8, unencrypted) and `name`.pub.pem (public)."""
    directory.mkdir(parents=True, exist_ok=True)
    public = directory / f"{name}.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return _write_key(directory / f"{name}.key.pem", key), public


def _write_key(path: Path, key: PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path
