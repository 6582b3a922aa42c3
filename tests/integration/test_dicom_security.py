"""DICOM security with real peers: TLS on the listener (dcmtk's echoscu/storescu and pynetdicom
as clients), mutual TLS, the calling-AE allowlist, the association limit, and TLS towards the
PACS (dcmtk's storescp with +tls as the PACS).

The PKI is made by the tests (tests/support/certs.py): a hospital CA issuing our listener's
certificate, a modality's client certificate and the PACS's certificate, plus a rogue CA whose
certificates nobody trusts. The service runs as `radiomics-cds ingest` in a subprocess,
configured through RCDS_* variables like any deployment, so what is tested is the wiring from
the settings to the listener. These tests send CT only (no contours), so no scorer is needed.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from cryptography.hazmat.primitives import serialization
from pynetdicom import Association
from pynetdicom.sop_class import CTImageStorage, Verification

from service.config import load_config
from service.errors import ConfigError, DeliveryError
from service.ingest.spool import Spool
from service.outputs.destinations import configured_destinations
from service.outputs.outbox import DELIVERED, PENDING, Outbox
from service.outputs.pacs import send_files
from service.tls import ClientTls, server_context
from tests.support.processes import free_port, wait_until
from tests.support.external import require_tool
from tests.support.certs import Authority, KeyPair, make_authority
from tests.support.service import CLI, OUR_AE, REPO, RunningService
from tests.support.storescp import PACS_AE, TlsStoreScp

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

LOOPBACK = "127.0.0.1"
# Mixed case on purpose: AE titles are case-sensitive and must stay as configured.
ALLOWED = ("ECHOSCU", "STORESCU", "Modality_1")




# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Authority
    listener: KeyPair  # our DICOM listener (SAN localhost, 127.0.0.1)
    modality: KeyPair  # a client certificate the hospital CA issued
    pacs: KeyPair  # the PACS's server certificate
    misnamed: KeyPair  # issued by the hospital CA for another host name
    rogue_ca: Authority
    rogue_server: KeyPair
    rogue_client: KeyPair


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_authority(directory, "Hospital")
    rogue = make_authority(directory / "rogue", "Rogue")
    return Pki(
        ca=ca, listener=ca.issue(directory, "rcds listener", server=True), modality=ca.issue(directory, "modality"),
        pacs=ca.issue(directory, "pacs", server=True),
        misnamed=ca.issue(directory, "misnamed", server=True, names=("pacs.invalid",)),
        rogue_ca=rogue, rogue_server=rogue.issue(directory / "rogue", "rogue server", server=True),
        rogue_client=rogue.issue(directory / "rogue", "rogue client"),
    )


def _client_context(ca_file: Path, identity: KeyPair | None = None) -> ssl.SSLContext:
    """A plain ssl client context (not service.tls): the tests' own idea of a TLS peer."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if identity is not None:
        context.load_cert_chain(identity.cert, identity.key)
    return context


# --- the service ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls_service(tmp_path_factory, pki: Pki) -> Iterator[RunningService]:
    """TLS with client certificates required (mutual TLS) and a calling-AE allowlist."""
    running = RunningService(
        tmp_path_factory.mktemp("mtls") / "var", "ingest", dicom_tls_cert_file=pki.listener.cert,
        dicom_tls_key_file=pki.listener.key, dicom_tls_ca_file=pki.ca.cert,
        dicom_allowed_calling_aes=",".join(ALLOWED),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory, pki: Pki) -> Iterator[RunningService]:
    """TLS without client certificates, any calling AE, at most 2 associations at a time."""
    running = RunningService(tmp_path_factory.mktemp("tls") / "var", "ingest", dicom_tls_cert_file=pki.listener.cert,
                             dicom_tls_key_file=pki.listener.key, dicom_max_associations=2)
    yield running
    running.stop()


def _dcmtk_tls(pki: Pki, identity: KeyPair) -> list[str]:
    """dcmtk's TLS options: our key and certificate, the CA that must have issued the peer's."""
    return ["+tls", str(identity.key), str(identity.cert), "+cf", str(pki.ca.cert), "-pw"]


# --- listener: TLS --------------------------------------------------------------------------


def test_dcmtk_echo_and_store_over_mutual_tls(mtls_service, pki, sts019):
    echo = subprocess.run([require_tool("echoscu"), *_dcmtk_tls(pki, pki.modality), "-aec", OUR_AE,
                           LOOPBACK, str(mtls_service.dicom_port)], capture_output=True, text=True, timeout=60)
    assert echo.returncode == 0, echo.stdout + echo.stderr

    files = sorted((sts019 / "image").iterdir())[:4]
    store = subprocess.run([require_tool("storescu"), *_dcmtk_tls(pki, pki.modality), "-aec", OUR_AE,
                            LOOPBACK, str(mtls_service.dicom_port), *map(str, files)],
                           capture_output=True, text=True, timeout=120)
    assert store.returncode == 0, store.stdout + store.stderr
    spool = Spool(mtls_service.var_dir / "spool")
    for file in files:
        header = pydicom.dcmread(file, stop_before_pixels=True)
        stored = spool.path_for(header.StudyInstanceUID, header.SOPInstanceUID)
        assert pydicom.dcmread(stored, stop_before_pixels=True).SOPInstanceUID == header.SOPInstanceUID
    assert "TLS, client certificates required" in mtls_service.read_log()


def test_plain_dicom_to_the_tls_port_is_refused(mtls_service, pki):
    before = mtls_service.rejected("tls")
    plain = mtls_service.associate()
    assert not plain.is_established
    wait_until(lambda: mtls_service.rejected("tls") == before + 1, 10, "the TLS refusal to be counted")
    assert "TLS handshake with 127.0.0.1:" in mtls_service.read_log()
    # ... and TLS peers are served as before
    tls = mtls_service.associate(tls=_client_context(pki.ca.cert, pki.modality))
    assert tls.is_established
    assert tls.send_c_echo().Status == 0x0000
    tls.release()


def test_an_idle_connection_does_not_hold_up_other_peers(mtls_service, pki):
    """pynetdicom shakes hands in the thread that accepts connections; our listener shakes hands
    in each connection's own thread, so a peer that connects and sends nothing blocks no one."""
    before = mtls_service.rejected("tls")
    with socket.create_connection((LOOPBACK, mtls_service.dicom_port)):
        time.sleep(0.3)  # accepted and waiting for a ClientHello that never comes
        started = time.monotonic()
        association = mtls_service.associate(tls=_client_context(pki.ca.cert, pki.modality))
        assert association.is_established and time.monotonic() - started < 5
        assert association.send_c_echo().Status == 0x0000
        association.release()
    # Closed without a handshake: counted as a TLS failure now, not later in another test's count.
    wait_until(lambda: mtls_service.rejected("tls") == before + 1, 10, "the silent peer's failure to be counted")


@pytest.mark.parametrize("identity", ["none", "rogue"])
def test_mutual_tls_refuses_a_client_without_a_trusted_certificate(mtls_service, pki, identity):
    before = mtls_service.rejected("tls")
    client = None if identity == "none" else pki.rogue_client
    association = mtls_service.associate(tls=_client_context(pki.ca.cert, client))
    assert not association.is_established
    wait_until(lambda: mtls_service.rejected("tls") == before + 1, 10, "the TLS refusal to be counted")
    expected = "peer did not return a certificate" if identity == "none" else "certificate verify failed"
    assert expected in mtls_service.read_log()


def test_without_a_ca_file_clients_need_no_certificate(tls_service, pki):
    association = tls_service.associate(tls=_client_context(pki.ca.cert))
    assert association.is_established
    assert association.send_c_echo().Status == 0x0000
    association.release()
    assert not tls_service.associate().is_established  # still TLS only
    assert "(TLS; calling AE titles: any; up to 2 associations)" in tls_service.read_log()


def test_failed_handshakes_take_no_association_slot(tls_service, pki):
    """A misconfigured peer retrying (here: plain DICOM, 3 times) must not lock out the others:
    at most 2 associations, and 2 TLS peers still get in straight away."""
    before = tls_service.rejected("tls")
    for _ in range(3):
        assert not tls_service.associate().is_established
    held = [tls_service.associate(tls=_client_context(pki.ca.cert)) for _ in range(2)]
    try:
        assert all(association.is_established for association in held)
    finally:
        for association in held:
            association.release()
    assert tls_service.rejected("tls") == before + 3
    assert tls_service.rejected("local_limit") == 0


# --- listener: who may associate ------------------------------------------------------------


def _rejection(association: Association) -> tuple[int, int, int]:
    """(result, source, reason) of the A-ASSOCIATE-RJ the peer sent."""
    assert association.is_rejected
    primitive = association.acceptor.primitive
    return primitive.result, primitive.result_source, primitive.diagnostic


def test_a_calling_ae_not_on_the_allowlist_is_rejected(mtls_service, pki):
    before = mtls_service.rejected("calling_ae")
    tls = _client_context(pki.ca.cert, pki.modality)
    # rejected permanent (1), service user (1), calling AE title not recognised (3)
    assert _rejection(mtls_service.associate("INTRUDER", tls)) == (0x01, 0x01, 0x03)
    assert _rejection(mtls_service.associate("MODALITY_1", tls)) == (0x01, 0x01, 0x03)  # case matters
    allowed = mtls_service.associate("Modality_1", tls)
    assert allowed.is_established
    allowed.release()
    assert mtls_service.rejected("calling_ae") == before + 2
    log = mtls_service.read_log()
    assert "rejected an association from calling AE 'INTRUDER' at 127.0.0.1:" in log
    assert "Calling AE title not recognised" in log

    echo = subprocess.run([require_tool("echoscu"), *_dcmtk_tls(pki, pki.modality), "-aet", "INTRUDER",
                           "-aec", OUR_AE, LOOPBACK, str(mtls_service.dicom_port)],
                          capture_output=True, text=True, timeout=60)
    output = echo.stdout + echo.stderr
    assert echo.returncode != 0
    assert "Rejected Permanent, Source: Service User" in output and "Calling AE Title Not Recognized" in output


def test_associations_beyond_the_maximum_are_rejected_while_earlier_ones_go_on(tls_service, pki, sts019):
    tls = _client_context(pki.ca.cert)
    before = tls_service.rejected("local_limit")
    held: list[Association] = []

    def hold(calling_ae: str, count: int) -> bool:
        """Open one more association; released ones (of earlier tests) may take a moment to end."""
        association = tls_service.associate(calling_ae, tls, contexts=(Verification, CTImageStorage))
        if association.is_established:
            held.append(association)
        return len(held) == count

    try:
        wait_until(lambda: hold("MODALITY_A", 2), 20, "two associations")
        third = tls_service.associate("MODALITY_B", tls)
        # rejected transient (2), service provider - presentation (3), local limit exceeded (2)
        assert _rejection(third) == (0x02, 0x03, 0x02)
        assert tls_service.rejected("local_limit") == before + 1
        assert "Local limit exceeded" in tls_service.read_log()

        for association in held:
            assert association.send_c_echo().Status == 0x0000
        ct = pydicom.dcmread(sorted((sts019 / "image").iterdir())[10])
        assert held[0].send_c_store(ct).Status == 0x0000

        held.pop().release()
        wait_until(lambda: hold("MODALITY_B", 2), 20, "a new association once one was released")
    finally:
        for association in held:
            association.release()


# --- configuration and start-up -------------------------------------------------------------


@pytest.mark.parametrize("environ, message", [
    ({"RCDS_DICOM_TLS_CERT_FILE": "a.crt"}, "dicom_tls_cert_file and dicom_tls_key_file go together"),
    ({"RCDS_DICOM_TLS_KEY_FILE": "a.key"}, "dicom_tls_cert_file and dicom_tls_key_file go together"),
    ({"RCDS_DICOM_TLS_CA_FILE": "ca.crt"}, "dicom_tls_ca_file .* needs DICOM TLS"),
    ({"RCDS_PACS_TLS_CA_FILE": "ca.crt"}, "pacs_tls_ca_file set but pacs_tls is off"),
    ({"RCDS_PACS_TLS": "true", "RCDS_PACS_TLS_CERT_FILE": "c.crt"}, "pacs_tls_cert_file and pacs_tls_key_file"),
    ({"RCDS_PACS_TLS": "perhaps"}, "pacs_tls"),
    ({"RCDS_DICOM_ALLOWED_CALLING_AES": "GOOD,A_TITLE_LONGER_THAN_16"}, "dicom_allowed_calling_aes"),
    ({"RCDS_DICOM_ALLOWED_CALLING_AES": "BACK\\SLASH"}, "dicom_allowed_calling_aes"),
])
def test_tls_and_allowlist_settings_are_checked(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ=environ)


def test_ae_titles_keep_their_case_and_roi_types_are_capitalised(tmp_path):
    config = load_config(environ={"RCDS_DICOM_ALLOWED_CALLING_AES": " Modality_1 , CT_scanner,,",
                                  "RCDS_LESION_ROI_TYPES": "gtv,", "RCDS_PACS_TLS": "yes"})
    assert config.dicom_allowed_calling_aes == ("Modality_1", "CT_scanner")
    assert config.lesion_roi_types == ("GTV", "")
    assert config.pacs_tls is True
    assert load_config(environ={}).dicom_allowed_calling_aes == ()
    path = tmp_path / "c.yaml"
    path.write_text("dicom_allowed_calling_aes: [Modality_1, PACS]\npacs_tls: false\n")
    assert load_config(path, environ={}).dicom_allowed_calling_aes == ("Modality_1", "PACS")
    path.write_text("dicom_allowed_calling_aes: [NO]\n")  # YAML reads an unquoted NO as false
    with pytest.raises(ConfigError, match="quote AE titles"):
        load_config(path, environ={})


def _encrypted_key(pair: KeyPair, target: Path) -> Path:
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    target.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    return target


@pytest.mark.parametrize("case, message", [
    ("missing cert", "dicom_tls_cert_file: cannot read"),
    ("key is a certificate", "dicom_tls_key_file: .* holds no PEM private key"),
    ("mismatched key", "dicom_tls_key_file: the key in .* does not belong to the certificate in dicom_tls_cert_file"),
    ("encrypted key", "dicom_tls_key_file: an encrypted private key cannot be used"),
    ("ca is a key", "dicom_tls_ca_file: .* holds no PEM certificate"),
])
def test_unusable_certificate_files_name_the_setting(pki, tmp_path, case, message):
    cert, key, ca = pki.listener.cert, pki.listener.key, pki.ca.cert
    if case == "missing cert":
        cert = tmp_path / "absent.crt"
    elif case == "key is a certificate":
        key = pki.listener.cert
    elif case == "mismatched key":
        key = pki.modality.key
    elif case == "encrypted key":
        key = _encrypted_key(pki.listener, tmp_path / "encrypted.key")
    else:
        ca = pki.ca.key
    with pytest.raises(ConfigError, match=message):
        server_context(cert, key, ca)


@pytest.mark.parametrize("command", ["serve", "ingest"])
def test_a_mismatched_key_stops_the_start_with_a_message_not_a_traceback(pki, tmp_path, command):
    env = {**os.environ, "RCDS_VAR_DIR": str(tmp_path / "var"), "RCDS_DICOM_PORT": str(free_port()),
           "RCDS_HTTP_PORT": str(free_port()), "RCDS_SCORER_ADDRESS": f"{LOOPBACK}:{free_port()}",
           "RCDS_DICOM_TLS_CERT_FILE": str(pki.listener.cert), "RCDS_DICOM_TLS_KEY_FILE": str(pki.modality.key)}
    done = subprocess.run(CLI + [command], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3  # configuration
    assert done.stderr.startswith("radiomics-cds: dicom_tls_key_file: the key in ")
    assert "Traceback" not in done.stderr + done.stdout
    assert "scoring core listening" not in done.stderr + done.stdout  # serve stopped before its scorer


# --- sending to a TLS PACS: dcmtk storescp +tls ---------------------------------------------


@pytest.fixture
def start_pacs(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., TlsStoreScp]]:
    require_tool("storescp")
    started: list[TlsStoreScp] = []

    def start(identity: KeyPair | None = None, require_client: bool = True) -> TlsStoreScp:
        identity = identity or pki.pacs
        scp = TlsStoreScp(tmp_path / f"pacs{len(started)}" / "received", key=identity.key, cert=identity.cert,
                          ca=pki.ca.cert, require_client=require_client)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


@pytest.fixture
def ct_files(sts019) -> list[Path]:
    return sorted((sts019 / "image").iterdir())[:3]


def _uids(files: list[Path]) -> list[str]:
    return sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)


def test_send_files_over_mutual_tls_to_storescp(start_pacs, pki, ct_files):
    pacs = start_pacs()
    report = send_files(ct_files, LOOPBACK, pacs.port, PACS_AE, OUR_AE,
                        tls=ClientTls(pki.ca.cert, pki.modality.cert, pki.modality.key))
    assert (report.sent, report.failed) == (3, [])
    assert pacs.received_uids() == _uids(ct_files)


def test_outbox_delivers_over_tls_as_configured(start_pacs, pki, ct_files, tmp_path):
    """From the settings to the PACS: the sender the service builds (configured_destinations) speaks TLS."""
    pacs = start_pacs()
    config = load_config(environ={
        "RCDS_PACS_HOST": LOOPBACK, "RCDS_PACS_PORT": str(pacs.port), "RCDS_PACS_TLS": "true",
        "RCDS_PACS_TLS_CA_FILE": str(pki.ca.cert), "RCDS_PACS_TLS_CERT_FILE": str(pki.modality.cert),
        "RCDS_PACS_TLS_KEY_FILE": str(pki.modality.key),
    })
    outbox = Outbox(tmp_path / "outbox.sqlite", configured_destinations(config))
    try:
        outbox.enqueue("pacs", ct_files[0])
        assert outbox.deliver_due() == 1
        assert outbox.deliveries()[0].state == DELIVERED
    finally:
        outbox.stop()
    assert pacs.received_uids() == _uids(ct_files[:1])


@pytest.mark.parametrize("case, message", [
    ("untrusted server", "certificate verify failed: unable to get local issuer certificate"),
    ("wrong host name", "certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ("no client certificate", "alert certificate required"),
])
def test_tls_failures_towards_the_pacs_say_tls_failed(start_pacs, pki, ct_files, case, message):
    identity = {"untrusted server": pki.rogue_server, "wrong host name": pki.misnamed}.get(case, pki.pacs)
    pacs = start_pacs(identity)
    ours = (pki.modality.cert, pki.modality.key) if case != "no client certificate" else (None, None)
    with pytest.raises(DeliveryError) as failure:
        send_files(ct_files, LOOPBACK, pacs.port, PACS_AE, OUR_AE, tls=ClientTls(pki.ca.cert, *ours))
    assert str(failure.value).startswith(f"TLS with {PACS_AE} at {LOOPBACK}:{pacs.port} failed: ")
    assert message in str(failure.value)
    assert not failure.value.permanent
    assert pacs.received_uids() == []


def test_a_tls_failure_is_retried_by_the_outbox(start_pacs, pki, ct_files, tmp_path):
    rogue = start_pacs(pki.rogue_server)
    config = load_config(environ={"RCDS_PACS_HOST": LOOPBACK, "RCDS_PACS_PORT": str(rogue.port),
                                  "RCDS_PACS_TLS": "1", "RCDS_PACS_TLS_CA_FILE": str(pki.ca.cert),
                                  "RCDS_PACS_TLS_CERT_FILE": str(pki.modality.cert),
                                  "RCDS_PACS_TLS_KEY_FILE": str(pki.modality.key)})
    outbox = Outbox(tmp_path / "outbox.sqlite", configured_destinations(config), initial_backoff_s=60)
    try:
        outbox.enqueue("pacs", ct_files[0])
        assert outbox.deliver_due() == 1
        delivery = outbox.deliveries()[0]
        assert (delivery.state, delivery.attempts) == (PENDING, 1)
        assert delivery.last_error.startswith("TLS with PACS at 127.0.0.1:") and "certificate verify failed" in (
            delivery.last_error)
        patient_id = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).PatientID)
        assert patient_id not in delivery.last_error
    finally:
        outbox.stop()


def test_send_command_over_tls(start_pacs, pki, ct_files):
    pacs = start_pacs()
    rogue = start_pacs(pki.rogue_server)

    def send(port: int, *tls: str) -> subprocess.CompletedProcess:
        return subprocess.run(CLI + ["send", "--host", LOOPBACK, "--port", str(port), "--aet", PACS_AE, *tls,
                                     *map(str, ct_files)], cwd=REPO, capture_output=True, text=True, timeout=120)

    ours = ["--tls", "--tls-ca-file", str(pki.ca.cert), "--tls-cert-file", str(pki.modality.cert),
            "--tls-key-file", str(pki.modality.key)]
    sent = send(pacs.port, *ours)
    assert sent.returncode == 0, sent.stderr
    assert f"sent 3 of 3 files to {PACS_AE}" in sent.stdout
    assert pacs.received_uids() == _uids(ct_files)

    refused = send(rogue.port, *ours)
    assert refused.returncode == 5  # the peer refused us
    assert "radiomics-cds: TLS with PACS at 127.0.0.1:" in refused.stderr and "certificate verify failed" in (
        refused.stderr)
    assert "Traceback" not in refused.stderr

    unusable = send(pacs.port, "--tls", "--tls-ca-file", str(pki.ca.key))
    assert unusable.returncode == 3 and "--tls-ca-file: " in unusable.stderr and "holds no PEM certificate" in (
        unusable.stderr)
    assert send(pacs.port, "--tls-ca-file", str(pki.ca.cert)).returncode == 2  # TLS flags need --tls
