"""Delivery through the durable outbox to real peers: dcmtk's storescp as the PACS, and
SEKMET (the `sekmet-fhir` package, a FHIR R4 server) as the EHR.

Every peer runs as its own process (or thread) on 127.0.0.1 and is stopped by its fixture;
every wait is bounded. The outbox's clock is driven through `deliver_due(now)`, so backoff is
tested without sleeping. The outbox's own bookkeeping (backoff, giving up, re-enqueueing,
recovery) is tests/unit/test_outbox.py, with fake senders. The fakes here are tiny HTTP
servers for FHIR answers that a real server does not give on demand (503, 429, 400 with an
OperationOutcome, a 401 while our token file is being rotated); their tests say so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.config import load_config
from service.errors import ConfigError
from service.outputs import codes
from service.outputs.destinations import Destination, EhrByFhir, PacsByCStore, configured_destinations
from service.outputs.fhir_auth import BearerToken, SmartBackendServices
from service.outputs.fhir import build_bundle
from service.outputs.outbox import DELIVERED, FAILED, PENDING, Outbox
from service.outputs.sr import build_measurement_report
from tests.support.processes import LOOPBACK, free_port, wait_until
from tests.support.external import require_tool
from tests.support.certs import make_authority, write_key_pair
from tests.support.fhir_servers import FhirServer, ScriptedFhirServer, require_sekmet
from tests.support.http_server import QuietHandler, serving
from tests.support.secret_volume import SecretVolume
from tests.support.storescp import PACS_AE, StoreScp
from tests.support.service import OUR_AE, QUIET_SECONDS, RunningService
from tests.support.synthetic_results import make_study_result
from tests.support.outbox import only
from tests.support.written_outputs import write_bundle, write_sr

pytestmark = [pytest.mark.external, pytest.mark.timeout(180)]

PATIENT_ID_SYSTEM = "urn:dicom:patient-id"
FAR_FUTURE = 10 * 365 * 24 * 3600.0
"""Added to now: every pending delivery is due, whatever its backoff."""




# --- outputs to deliver ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_outputs(tmp_path_factory) -> tuple[Path, Path]:
    """One real SR and its FHIR Bundle, built once from the synthetic study result."""
    result, evidence = make_study_result()
    out = tmp_path_factory.mktemp("built")
    sr = build_measurement_report(result, evidence)
    sr_path = write_sr(sr, out)
    bundle_path = write_bundle(build_bundle(result, sr_sop_instance_uid=str(sr.SOPInstanceUID)), out)
    return sr_path, bundle_path


@pytest.fixture
def outbox_dir(tmp_path: Path, built_outputs: tuple[Path, Path]) -> Path:
    """A fresh var/outbox-like directory holding a copy of the SR and the Bundle."""
    directory = tmp_path / "outbox"
    directory.mkdir()
    for path in built_outputs:
        shutil.copy2(path, directory / path.name)
    return directory


@pytest.fixture
def sr_path(outbox_dir: Path) -> Path:
    return next(outbox_dir.glob("*.dcm"))


@pytest.fixture
def bundle_path(outbox_dir: Path) -> Path:
    return next(outbox_dir.glob("*.fhir.json"))


# --- the PACS: dcmtk storescp ---------------------------------------------------------------


@pytest.fixture
def pacs_port() -> int:
    return free_port()


@pytest.fixture
def start_pacs(tmp_path: Path, pacs_port: int) -> Iterator[Callable[[], StoreScp]]:
    """Starts storescp on `pacs_port` when called (tests start it late to see retries)."""
    require_tool("storescp")
    started: list[StoreScp] = []

    def start() -> StoreScp:
        scp = StoreScp(tmp_path / "pacs" / "received", pacs_port)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


def _pacs(port: int) -> list[PacsByCStore]:
    return [PacsByCStore(LOOPBACK, port, PACS_AE, OUR_AE)]


# --- PACS tests -----------------------------------------------------------------------------


def test_sr_is_delivered_to_storescp(sr_path, pacs_port, start_pacs, outboxes):
    pacs = start_pacs()
    outbox = outboxes(_pacs(pacs_port))
    outbox.enqueue("pacs", sr_path)

    assert outbox.deliver_due() == 1

    delivery = only(outbox)
    assert (delivery.state, delivery.attempts, delivery.last_error) == (DELIVERED, 1, None)
    assert delivery.path == sr_path and sr_path.exists()
    received = pacs.received()
    sent = pydicom.dcmread(sr_path)
    assert [ds.SOPInstanceUID for ds in received] == [sent.SOPInstanceUID]
    assert received[0].SOPClassUID == sent.SOPClassUID
    assert received[0].ContentSequence == sent.ContentSequence
    assert outbox.pending_count() == 0


def test_unreachable_pacs_is_retried_after_backoff(sr_path, pacs_port, start_pacs, outboxes):
    """No storescp on the port at first: a real refused connection, not a simulated one."""
    outbox = outboxes(_pacs(pacs_port), initial_backoff_s=60)
    outbox.enqueue("pacs", sr_path)

    assert outbox.deliver_due() == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (PENDING, 1)
    assert "no association" in delivery.last_error and str(pacs_port) in delivery.last_error
    assert sr_path.exists()
    assert outbox.pending_count() == 1

    # Within the backoff nothing is attempted, even with the PACS back.
    pacs = start_pacs()
    assert outbox.deliver_due(time.time() + 30) == 0
    assert only(outbox).attempts == 1

    assert outbox.deliver_due(time.time() + 61) == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts, delivery.last_error) == (DELIVERED, 2, None)
    assert [ds.SOPInstanceUID for ds in pacs.received()] == [pydicom.dcmread(sr_path).SOPInstanceUID]


def test_pending_delivery_survives_a_restart(sr_path, pacs_port, start_pacs, outboxes):
    first = outboxes(_pacs(pacs_port), initial_backoff_s=60)
    first.enqueue("pacs", sr_path)
    first.deliver_due()  # PACS down: one failed attempt to carry across the restart
    first.stop()

    pacs = start_pacs()
    second = outboxes(_pacs(pacs_port), initial_backoff_s=60)
    delivery = only(second)
    assert (delivery.destination, delivery.path, delivery.state, delivery.attempts) == ("pacs", sr_path, PENDING, 1)
    assert "no association" in delivery.last_error
    assert second.pending_count() == 1
    assert second.deliver_due() == 0  # the backoff survives the restart too

    assert second.deliver_due(time.time() + FAR_FUTURE) == 1
    assert (only(second).state, only(second).attempts) == (DELIVERED, 2)
    assert [ds.SOPInstanceUID for ds in pacs.received()] == [pydicom.dcmread(sr_path).SOPInstanceUID]


def test_background_thread_delivers_when_the_pacs_is_up(sr_path, pacs_port, start_pacs, outboxes):
    pacs = start_pacs()
    outbox = outboxes(_pacs(pacs_port))
    outbox.start()
    outbox.enqueue("pacs", sr_path)
    wait_until(lambda: only(outbox).state == DELIVERED, 30, "the outbox thread to deliver")
    assert len(pacs.received()) == 1


# --- the EHR: SEKMET, a real FHIR R4 server -------------------------------------------------


@pytest.fixture
def fhir_server(tmp_path: Path) -> Iterator[FhirServer]:
    """A fresh SEKMET per test (starts in about 2 s), so every test sees an empty EHR."""
    require_sekmet()
    server = FhirServer(tmp_path / "sekmet")
    yield server
    server.stop()


def _ehr(base: str) -> list[EhrByFhir]:
    return [EhrByFhir(base, timeout_s=30)]


def _register_patient(server: FhirServer, patient_id: str) -> str:
    """The EHR knows the patient before any result arrives; the Bundle refers to it by identifier."""
    created = server.create({"resourceType": "Patient",
                             "identifier": [{"system": PATIENT_ID_SYSTEM, "value": patient_id}]})
    return created["id"]


def _codes(concept: dict) -> set[str]:
    return {coding["code"] for coding in concept.get("coding", [])}


def _component(observation: dict, code) -> dict:
    matches = [c for c in observation["component"] if code.value in _codes(c["code"])]
    assert len(matches) == 1, (code, observation["component"])
    return matches[0]


def _assert_results_in_ehr(server: FhirServer, patient_ref: str, version: str, result=None) -> None:
    """What the EHR holds after a delivery: one set of resources for the study, read back by
    searching for the patient's Observations, with the values of `result`."""
    result = result or make_study_result()[0]
    observations = server.search("Observation", subject=patient_ref)
    per_lesion = sum(3 + len(lesion.features) for lesion in result.lesions)
    assert len(observations) == per_lesion + 6
    assert all(o["meta"]["versionId"] == version for o in observations)
    assert all(o["subject"]["reference"] == patient_ref for o in observations)

    sizes = [o for o in observations if codes.LOINC_TUMOR_SIZE.value in _codes(o["code"])]
    scores = [o for o in observations if codes.CD8_SCORE.value in _codes(o["code"])]
    for lesion in result.lesions:
        tracking_uid = f"urn:oid:{lesion.tracking_uid}"
        (size,) = [o for o in sizes if o["focus"][0]["identifier"]["value"] == tracking_uid]
        volume = _component(size, codes.VOLUME)["valueQuantity"]
        assert (volume["value"], volume["code"]) == (pytest.approx(lesion.volume_ml), "mL")
        longest = _component(size, codes.LOINC_TUMOR_LONGEST_DIMENSION)["valueQuantity"]
        assert longest["value"] == pytest.approx(lesion.longest_axial_diameter_mm)
        (score,) = [o for o in scores if o["focus"][0]["identifier"]["value"] == tracking_uid]
        if lesion.score is None:
            assert "valueQuantity" not in score and score["dataAbsentReason"]["text"] == lesion.not_computable
        else:
            assert score["valueQuantity"]["value"] == pytest.approx(lesion.score)

    (panel,) = [o for o in observations if codes.PATIENT_BIOMARKERS.value in _codes(o["code"])]
    (risk,) = [o for o in observations if codes.RISK_GROUP.value in _codes(o["code"])]
    assert codes.RISK_GROUPS[result.patient.risk_group].value in _codes(risk["valueCodeableConcept"])
    # In-Bundle references were resolved by the server to the ids it assigned.
    ids = {f"Observation/{o['id']}" for o in observations}
    assert {m["reference"] for m in panel["hasMember"]} <= ids and len(panel["hasMember"]) == 5 + len(result.lesions)
    [report] = server.search("DiagnosticReport", subject=patient_ref)
    assert {r["reference"] for r in report["result"]} == ids
    assert len(server.search("Device")) == 1


def _assert_delivered_at_once(server: FhirServer, destinations: Sequence[Destination], bundle_path: Path,
                              outboxes: Callable[..., Outbox]) -> None:
    """The study's patient registered at `server`, the Bundle delivered through `destinations` at
    the first attempt, and what the EHR then holds (_assert_results_in_ehr)."""
    result, _ = make_study_result()
    patient_ref = f"Patient/{_register_patient(server, result.study.patient_id)}"
    outbox = outboxes(destinations)
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    assert (only(outbox).state, only(outbox).last_error) == (DELIVERED, None)
    _assert_results_in_ehr(server, patient_ref, version="1")


def test_bundle_is_delivered_to_a_real_fhir_server(bundle_path, fhir_server, outboxes):
    result, _ = make_study_result()
    patient_ref = f"Patient/{_register_patient(fhir_server, result.study.patient_id)}"
    outbox = outboxes(_ehr(fhir_server.base))
    outbox.enqueue("fhir", bundle_path)

    assert outbox.deliver_due() == 1
    assert (only(outbox).state, only(outbox).attempts, only(outbox).last_error) == (DELIVERED, 1, None)
    _assert_results_in_ehr(fhir_server, patient_ref, version="1")

    # Sent again (a re-written result is re-enqueued): conditional updates, no duplicates.
    outbox.enqueue("fhir", bundle_path)
    assert outbox.deliver_due() == 1
    assert only(outbox).state == DELIVERED
    _assert_results_in_ehr(fhir_server, patient_ref, version="2")


def test_real_fhir_server_refusal_is_permanent(bundle_path, fhir_server, outboxes):
    """A real 4xx: SEKMET rejects the transaction whose conditional Patient reference matches
    no patient (the EHR does not know this patient), and says why in an OperationOutcome."""
    result, _ = make_study_result()
    outbox = outboxes(_ehr(fhir_server.base))
    outbox.enqueue("fhir", bundle_path)

    assert outbox.deliver_due() == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (FAILED, 1)
    assert delivery.last_error.startswith("FHIR server answered 4")
    # The server's diagnostics quote the conditional reference; its patient identifier is masked
    # before the text reaches the log and the outbox database.
    assert f"Patient?identifier={PATIENT_ID_SYSTEM}|<masked>" in delivery.last_error
    assert result.study.patient_id not in delivery.last_error
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 0
    assert bundle_path.exists()
    assert fhir_server.search("Observation") == []  # the transaction was rolled back whole


def test_fhir_delivery_survives_a_restart(bundle_path, fhir_server, outboxes):
    result, _ = make_study_result()
    patient_ref = f"Patient/{_register_patient(fhir_server, result.study.patient_id)}"
    closed = f"http://{LOOPBACK}:{free_port()}/fhir"  # nothing listens: a real network failure
    first = outboxes(_ehr(closed))
    first.enqueue("fhir", bundle_path)
    first.deliver_due()
    assert (only(first).state, only(first).attempts) == (PENDING, 1)
    assert "unreachable" in only(first).last_error
    first.stop()

    second = outboxes(_ehr(fhir_server.base))  # the EHR's address fixed in the config
    assert second.deliver_due(time.time() + FAR_FUTURE) == 1
    assert (only(second).state, only(second).attempts) == (DELIVERED, 2)
    _assert_results_in_ehr(fhir_server, patient_ref, version="1")


def test_missing_bundle_file_fails_without_stopping_other_deliveries(bundle_path, fhir_server, outboxes):
    """A Bundle removed from the outbox by hand must not take the delivery thread down with it."""
    result, _ = make_study_result()
    patient_ref = f"Patient/{_register_patient(fhir_server, result.study.patient_id)}"
    outbox = outboxes(_ehr(fhir_server.base))
    gone = bundle_path.with_name("removed.fhir.json")
    outbox.enqueue("fhir", gone)
    outbox.enqueue("fhir", bundle_path)
    outbox.start()

    wait_until(lambda: {d.path: d.state for d in outbox.deliveries()} == {gone: FAILED, bundle_path: DELIVERED},
                30, f"both deliveries to finish: {outbox.deliveries()}")
    failed = next(d for d in outbox.deliveries() if d.path == gone)
    assert failed.attempts == 1 and "removed.fhir.json" in failed.last_error
    _assert_results_in_ehr(fhir_server, patient_ref, version="1")


def test_rescoring_updates_the_same_resources(bundle_path, fhir_server, outboxes, tmp_path):
    """A re-scored study (other values, a new SR) updates every resource in place: one set."""
    result, _ = make_study_result()
    patient_ref = f"Patient/{_register_patient(fhir_server, result.study.patient_id)}"
    outbox = outboxes(_ehr(fhir_server.base))
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    rescored = dataclasses.replace(result, lesions=[dataclasses.replace(x, volume_ml=x.volume_ml * 2)
                                                    for x in result.lesions])
    second = write_bundle(build_bundle(rescored, sr_sop_instance_uid="2.25.42"), tmp_path / "rescored")
    outbox.enqueue("fhir", second)
    outbox.deliver_due()
    assert {d.state for d in outbox.deliveries()} == {DELIVERED}
    _assert_results_in_ehr(fhir_server, patient_ref, version="2", result=rescored)
    derived = {d["identifier"]["value"] for o in fhir_server.search("Observation", subject=patient_ref)
               for d in o["derivedFrom"]}
    assert "urn:oid:2.25.42" in derived


# --- SMART backend services against SEKMET's token endpoint -----------------------------------

CLIENT_ID = "radiomics-cds"


def _private_key(directory: Path, kind: str) -> tuple[Path, Path]:
    """A new RSA (RS384) or EC P-384 (ES384) key pair as PEM files (private, public)."""
    key = rsa.generate_private_key(65537, 2048) if kind == "RSA" else ec.generate_private_key(ec.SECP384R1())
    return write_key_pair(directory, kind, key)


@pytest.fixture(params=["RSA", "EC"])
def smart_server(request, tmp_path: Path) -> Iterator[tuple[FhirServer, Path]]:
    """SEKMET accepting only SMART access tokens, with our client's public key registered."""
    require_sekmet()
    private, public = _private_key(tmp_path / "keys", request.param)
    server = FhirServer(tmp_path / "sekmet-smart", server_auth={
        "types": ["smart"], "enforce_scopes": True,
        "smart_clients": [{"client_id": CLIENT_ID, "public_key_path": str(public), "scopes": "system/*.cruds"}],
    })
    yield server, private
    server.stop()


def test_smart_backend_services_delivers_with_a_signed_assertion(bundle_path, smart_server, outboxes):
    server, private_key = smart_server
    def client() -> SmartBackendServices:  # token endpoint discovered
        return SmartBackendServices(client_id=CLIENT_ID, private_key_file=private_key, scope="system/*.cruds",
                                    fhir_base_url=server.base)

    server.bearer = client().header().removeprefix("Bearer ")  # the test's own reads
    auth = client()  # the delivery's: it fetches its own token
    result, _ = make_study_result()
    patient_ref = f"Patient/{_register_patient(server, result.study.patient_id)}"

    unauthorised = outboxes(_ehr(server.base))
    unauthorised.enqueue("fhir", bundle_path)
    unauthorised.deliver_due()
    assert (only(unauthorised).state, only(unauthorised).last_error[:24]) == (FAILED, "FHIR server answered 401")
    unauthorised.stop()

    outbox = outboxes([EhrByFhir(server.base, auth, timeout_s=30)])
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    assert (only(outbox).state, only(outbox).last_error) == (DELIVERED, None)
    _assert_results_in_ehr(server, patient_ref, version="1")


def test_smart_client_the_ehr_does_not_know_is_a_permanent_error(bundle_path, smart_server, outboxes, tmp_path):
    server, _ = smart_server
    stranger, _ = _private_key(tmp_path / "stranger", "RSA")
    auth = SmartBackendServices(client_id="someone-else", private_key_file=stranger, scope="system/*.cruds",
                                fhir_base_url=server.base)
    outbox = outboxes([EhrByFhir(server.base, auth, timeout_s=30)])
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    delivery = only(outbox)
    assert delivery.state == FAILED and delivery.attempts == 1
    assert delivery.last_error.startswith("SMART token endpoint answered 401: invalid_client")


def test_smart_assertion_is_what_the_spec_asks_for(tmp_path):
    """Checked with PyJWT against the public key, independently of SEKMET: RS384, iss = sub =
    client id, aud = token endpoint, exp at most 5 minutes ahead, a fresh jti each time."""
    import jwt

    private, public = _private_key(tmp_path, "RSA")
    auth = SmartBackendServices(client_id=CLIENT_ID, private_key_file=private, scope="system/*.rs",
                                fhir_base_url="https://ehr.example/fhir", key_id="key-1")
    token_url = "https://ehr.example/token"
    first, second = auth.assertion(token_url), auth.assertion(token_url)
    claims = jwt.decode(first, public.read_text(), algorithms=["RS384"], audience=token_url)
    assert jwt.get_unverified_header(first) == {"alg": "RS384", "typ": "JWT", "kid": "key-1"}
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert 0 < claims["exp"] - time.time() <= 300
    assert claims["jti"] != jwt.decode(second, public.read_text(), algorithms=["RS384"], audience=token_url)["jti"]


def test_a_smart_key_rotated_in_its_secret_signs_the_next_assertion(tmp_path, caplog):
    """The private key file is a mounted Secret, updated as kubelet does: the next assertion is
    signed with the new key (checked with PyJWT against each public key) under the new key's
    kid; a file then holding no usable key keeps the last good one signing, with one WARNING."""
    import jwt

    old_private, old_public = _private_key(tmp_path / "old", "RSA")
    new_private, new_public = _private_key(tmp_path / "new", "EC")
    secret = SecretVolume(tmp_path / "smart-key", "key.pem", old_private.read_bytes())
    auth = SmartBackendServices(client_id=CLIENT_ID, private_key_file=secret.path, scope="system/*.rs",
                                fhir_base_url="https://ehr.example/fhir")
    token_url = "https://ehr.example/token"
    before = auth.assertion(token_url)
    jwt.decode(before, old_public.read_text(), algorithms=["RS384"], audience=token_url)

    secret.rotate(new_private.read_bytes())
    after = auth.assertion(token_url)
    jwt.decode(after, new_public.read_text(), algorithms=["ES384"], audience=token_url)
    assert jwt.get_unverified_header(after)["alg"] == "ES384"
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]

    caplog.set_level(logging.WARNING, logger="service.outputs.fhir_auth")
    p256_private, _ = write_key_pair(tmp_path / "p256", "EC", ec.generate_private_key(ec.SECP256R1()))
    for unusable in ("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
                     p256_private.read_bytes()):  # SMART signs with P-384 (ES384), not P-256
        secret.rotate(unusable)
        for _ in range(2):
            kept = auth.assertion(token_url)
            jwt.decode(kept, new_public.read_text(), algorithms=["ES384"], audience=token_url)
    warnings = [r.getMessage() for r in caplog.records if r.name == "service.outputs.fhir_auth"]
    assert len(warnings) == 2 and all("the key read before signs" in w for w in warnings)
    assert "not a key" not in warnings[0] and "ES384" in warnings[1]


def test_a_real_ehr_takes_the_assertion_of_a_key_rotated_since_the_start(bundle_path, outboxes, tmp_path):
    """SEKMET knows only the new key (the EHR's old key removed after the rotation); the service
    started with the old key in its Secret, which was then rotated: the Bundle is delivered, with
    no restart."""
    require_sekmet()
    old_private, _ = _private_key(tmp_path / "old", "RSA")
    new_private, new_public = _private_key(tmp_path / "new", "RSA")
    server = FhirServer(tmp_path / "sekmet-smart", server_auth={
        "types": ["smart"], "enforce_scopes": True,
        "smart_clients": [{"client_id": CLIENT_ID, "public_key_path": str(new_public), "scopes": "system/*.cruds"}],
    })
    try:
        secret = SecretVolume(tmp_path / "smart-key", "key.pem", old_private.read_bytes())
        auth = SmartBackendServices(client_id=CLIENT_ID, private_key_file=secret.path, scope="system/*.cruds",
                                    fhir_base_url=server.base)
        secret.rotate(new_private.read_bytes())
        server.bearer = auth.header().removeprefix("Bearer ")  # the test's own reads
        _assert_delivered_at_once(server, [EhrByFhir(server.base, auth, timeout_s=30)], bundle_path, outboxes)
    finally:
        server.stop()


# --- a bearer token from a file: a mounted Secret rotated while the service runs ------------------

OLD_TOKEN, NEW_TOKEN = "token-before-rotation", "token-after-rotation"


@pytest.fixture
def token_ehr(tmp_path: Path) -> Iterator[FhirServer]:
    """SEKMET taking one static bearer token: the one the Secret is rotated to."""
    require_sekmet()
    server = FhirServer(tmp_path / "sekmet-bearer", server_auth={"types": ["bearer"], "tokens": [NEW_TOKEN]})
    server.bearer = NEW_TOKEN  # the test's own reads
    yield server
    server.stop()


def _configured_ehr(base: str, **settings: str) -> tuple[Destination, ...]:
    """The EHR destination as the service builds it from its settings."""
    return configured_destinations(load_config(environ={"RCDS_FHIR_BASE_URL": base, **settings}))


def test_a_token_file_rotated_while_the_service_runs_is_sent_from_the_next_attempt(bundle_path, token_ehr,
                                                                                   outboxes, tmp_path):
    """The EHR takes the new token before kubelet has updated the pod's copy of the Secret: its
    401s are retried, not given up, and the first attempt after the rotation delivers, with no
    restart and no `redeliver`."""
    result, _ = make_study_result()
    patient_ref = f"Patient/{_register_patient(token_ehr, result.study.patient_id)}"
    secret = SecretVolume(tmp_path / "fhir-token", "token", f"{OLD_TOKEN}\n")
    outbox = outboxes(_configured_ehr(token_ehr.base, RCDS_FHIR_BEARER_TOKEN_FILE=str(secret.path)))
    outbox.enqueue("fhir", bundle_path)

    for attempt in (1, 2):
        outbox.deliver_due(time.time() + FAR_FUTURE)
        refused = only(outbox)
        assert (refused.state, refused.attempts) == (PENDING, attempt)
        assert refused.last_error.startswith(
            "FHIR server answered 401: it refused the token from fhir_bearer_token_file")
        assert "read again at each attempt" in refused.last_error and OLD_TOKEN not in refused.last_error

    secret.rotate(NEW_TOKEN)
    outbox.deliver_due(time.time() + FAR_FUTURE)
    assert (only(outbox).state, only(outbox).attempts, only(outbox).last_error) == (DELIVERED, 3, None)
    _assert_results_in_ehr(token_ehr, patient_ref, version="1")


def test_a_token_given_in_the_configuration_that_the_ehr_refuses_is_given_up(bundle_path, token_ehr, outboxes):
    """It cannot change while the service runs: the EHR's 401 is final, as it always was."""
    outbox = outboxes(_configured_ehr(token_ehr.base, RCDS_FHIR_BEARER_TOKEN=OLD_TOKEN))
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    assert (only(outbox).state, only(outbox).attempts) == (FAILED, 1)
    assert only(outbox).last_error.startswith("FHIR server answered 401: ")
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 0


def test_a_401_while_the_token_file_changes_is_answered_at_once_with_the_new_token(bundle_path, outboxes,
                                                                                  tmp_path):
    """Fake server (a real one cannot rotate our file while it answers): the Secret is swapped
    while the request with the old token is under way. The EHR's 401 to it is followed at once by
    the Bundle with the new token, in the same attempt, as SMART follows one with a fresh token;
    while the file is unchanged, a 401 costs one request and the attempt."""
    secret = SecretVolume(tmp_path / "fhir-token", "token", OLD_TOKEN)
    sent: list[str | None] = []

    class RotatedMidway(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            sent.append(self.headers.get("Authorization"))
            if len(sent) == 2:
                secret.rotate(NEW_TOKEN)
            accepted = sent[-1] == f"Bearer {NEW_TOKEN}"
            body = json.dumps(_TRANSACTION_RESPONSE if accepted else _outcome("token revoked")).encode()
            self.send_response(200 if accepted else 401)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(RotatedMidway) as base:
        outbox = outboxes(_configured_ehr(f"{base}/fhir", RCDS_FHIR_BEARER_TOKEN_FILE=str(secret.path)))
        outbox.enqueue("fhir", bundle_path)
        outbox.deliver_due()
        assert (only(outbox).state, only(outbox).attempts, len(sent)) == (PENDING, 1, 1)
        assert "token revoked" in only(outbox).last_error
        outbox.deliver_due(time.time() + FAR_FUTURE)
    assert (only(outbox).state, only(outbox).attempts) == (DELIVERED, 2)
    assert sent == [f"Bearer {OLD_TOKEN}", f"Bearer {OLD_TOKEN}", f"Bearer {NEW_TOKEN}"]


# --- the EHR down while a study is scored: the service's own outbox catches up ----------------


def test_a_down_ehr_loses_nothing_and_gets_the_bundle_when_back(tmp_path, sts019):
    """`serve` scores STS_019 while the EHR is stopped; the delivery fails and waits; the EHR
    comes back on the same address; the Bundle arrives without anyone re-sending the study."""
    require_sekmet()
    ehr = FhirServer(tmp_path / "ehr")
    patient_id = str(pydicom.dcmread(next(sts019.rglob("*.dcm")), stop_before_pixels=True).PatientID)
    patient_ref = f"Patient/{_register_patient(ehr, patient_id)}"
    ehr.stop()
    service = RunningService(tmp_path / "var", fhir_base_url=ehr.base, quiet_seconds=QUIET_SECONDS,
                             delivery_initial_backoff_seconds=1)
    try:
        sent = service.storescu(sts019)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(lambda: any(state == "pending" and "unreachable" in (error or "")
                               for state, _, error in service.deliveries("fhir")), 180,
                   "a failed FHIR delivery attempt while the EHR is down")
        ehr.start()
        wait_until(lambda: "delivered" in [state for state, _, _ in service.deliveries("fhir")], 120,
                   "the FHIR delivery once the EHR is back")
        observations = ehr.search("Observation", subject=patient_ref)
        assert observations and all(o["derivedFrom"] for o in observations)
        assert len(ehr.search("DiagnosticReport", subject=patient_ref)) == 1
    finally:
        service.stop()
        ehr.stop()


# --- FHIR faults on demand: a fake server ---------------------------------------------------


@pytest.fixture
def scripted_fhir() -> Iterator[Callable[[list], ScriptedFhirServer]]:
    servers: list[ScriptedFhirServer] = []

    def start(answers: list[tuple[int, dict]]) -> ScriptedFhirServer:
        servers.append(ScriptedFhirServer(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _outcome(diagnostics: str) -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}]}


_TRANSACTION_RESPONSE = {"resourceType": "Bundle", "type": "transaction-response", "entry": []}


def test_fhir_503_is_retried(bundle_path, scripted_fhir, outboxes):
    """Fake server (a real one does not answer 503 on demand): 503, then 200."""
    server = scripted_fhir([(503, _outcome("database is being restarted")), (200, _TRANSACTION_RESPONSE)])
    outbox = outboxes(_ehr(server.base), initial_backoff_s=60)
    outbox.enqueue("fhir", bundle_path)

    assert outbox.deliver_due() == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (PENDING, 1)
    assert delivery.last_error == "FHIR server answered 503: database is being restarted"
    assert outbox.deliver_due(time.time() + 30) == 0

    assert outbox.deliver_due(time.time() + 61) == 1
    assert (only(outbox).state, only(outbox).attempts, only(outbox).last_error) == (DELIVERED, 2, None)
    assert len(server.requests) == 2
    for method, path, headers, body in server.requests:
        assert (method, path) == ("POST", "/fhir")
        assert headers["Content-Type"] == "application/fhir+json"
        assert body == bundle_path.read_bytes()


def test_fhir_429_is_retried(bundle_path, scripted_fhir, outboxes):
    """Fake server (a real one does not rate-limit on demand): 429 Too Many Requests is a 4xx
    that says "later", not "your Bundle is wrong", so it is retried like a 5xx."""
    server = scripted_fhir([(429, _outcome("rate limit exceeded")), (200, _TRANSACTION_RESPONSE)])
    outbox = outboxes(_ehr(server.base))
    outbox.enqueue("fhir", bundle_path)

    outbox.deliver_due()
    assert (only(outbox).state, only(outbox).attempts) == (PENDING, 1)
    assert "429" in only(outbox).last_error
    outbox.deliver_due(time.time() + FAR_FUTURE)
    assert only(outbox).state == DELIVERED


def test_fhir_timeout_is_retried(bundle_path, scripted_fhir, outboxes):
    server = scripted_fhir([(None, 3.0)])
    outbox = outboxes([EhrByFhir(server.base, timeout_s=0.5)])
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (PENDING, 1)
    assert "timed out" in delivery.last_error


def test_smart_401_gets_a_new_token_and_tries_once_more(bundle_path, scripted_fhir, outboxes, tmp_path):
    """An access token the EHR stopped accepting before its expiry: dropped, a new one fetched,
    the Bundle sent again with it, in the same attempt."""
    server = scripted_fhir([(200, {"access_token": "first", "expires_in": 3600}),
                            (401, {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "revoked"}]}),
                            (200, {"access_token": "second", "expires_in": 3600}),
                            (200, {"resourceType": "Bundle", "type": "transaction-response"})])
    private, _ = _private_key(tmp_path, "EC")
    auth = SmartBackendServices(client_id=CLIENT_ID, private_key_file=private, scope="system/*.cru",
                                fhir_base_url=server.base, token_url=server.base + "/token")
    outbox = outboxes([EhrByFhir(server.base, auth, timeout_s=10)])
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    assert (only(outbox).state, only(outbox).attempts) == (DELIVERED, 1)
    paths = [path for _, path, _, _ in server.requests]
    assert paths == ["/fhir/token", "/fhir", "/fhir/token", "/fhir"]
    assert [headers.get("Authorization") for _, path, headers, _ in server.requests if path == "/fhir"] == [
        "Bearer first", "Bearer second"]
    form = urllib.parse.parse_qs(server.requests[0][3].decode())
    assert form["grant_type"] == ["client_credentials"] and form["scope"] == ["system/*.cru"]


def test_an_ehr_that_hangs_does_not_hold_the_sr_for_the_pacs(sr_path, bundle_path, pacs_port, start_pacs,
                                                              scripted_fhir, outboxes):
    """Fake EHR (a real server does not hang on demand): it holds the Bundle's POST for 15 s.
    The SR enqueued after it reaches storescp while that POST is still open: the attempt to the
    EHR has not been recorded yet when the PACS's delivery is. With one thread for every
    destination the SR waited for the EHR's answer (or its 60 s timeout)."""
    pacs = start_pacs()
    server = scripted_fhir([(None, 15.0)])
    outbox = outboxes([*_pacs(pacs_port), EhrByFhir(server.base, timeout_s=60)])
    outbox.start()
    outbox.enqueue("fhir", bundle_path)
    wait_until(lambda: server.requests, 20, "the Bundle's POST to reach the EHR")
    outbox.enqueue("pacs", sr_path)
    state = {}
    wait_until(lambda: state.update({d.destination: (d.state, d.attempts) for d in outbox.deliveries()})
               or state["pacs"][0] == DELIVERED, 60, "the SR to reach the PACS")
    assert state["fhir"] == (PENDING, 0)  # its POST still unanswered
    assert len(pacs.received()) == 1


def test_fhir_400_is_permanent_with_the_outcome(bundle_path, scripted_fhir, outboxes):
    """Fake server (a real one does not refuse a valid Bundle on demand): 400 + OperationOutcome."""
    diagnostics = "Observation.status: value 'final' is not allowed by profile XYZ"
    server = scripted_fhir([(400, _outcome(diagnostics))])
    outbox = outboxes(_ehr(server.base))
    outbox.enqueue("fhir", bundle_path)

    assert outbox.deliver_due() == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (FAILED, 1)
    assert delivery.last_error == f"FHIR server answered 400: {diagnostics}"
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 0
    assert len(server.requests) == 1
    assert bundle_path.exists()


def test_fhir_bearer_token_is_sent(bundle_path, scripted_fhir, outboxes):
    """Fake server: it records the request headers, which a real server does not show us."""
    server = scripted_fhir([(200, _TRANSACTION_RESPONSE)])
    outbox = outboxes([EhrByFhir(server.base + "/", BearerToken("s3cret"), timeout_s=30)])
    outbox.enqueue("fhir", bundle_path)
    outbox.deliver_due()
    assert only(outbox).state == DELIVERED
    [(_, path, headers, _)] = server.requests
    assert path == "/fhir"  # the trailing slash of the configured base is not doubled
    assert headers["Authorization"] == "Bearer s3cret"


def test_fhir_redirect_is_not_followed_as_a_get(bundle_path, scripted_fhir, outboxes):
    """Fake server (a real one does not redirect on demand): a 301 to a POST. Following it
    would re-issue the request as a GET without the Bundle, whose 200 is no delivery."""
    server = scripted_fhir([(301, {}, {"Location": "/fhir/"}), (200, {"resourceType": "CapabilityStatement"})])
    outbox = outboxes(_ehr(server.base))
    outbox.enqueue("fhir", bundle_path)

    assert outbox.deliver_due() == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (FAILED, 1)
    assert delivery.last_error.startswith("FHIR server answered 301: redirected to /fhir/")
    assert [(method, path) for method, path, _, _ in server.requests] == [("POST", "/fhir")]


def test_pacs_that_does_not_take_sr_says_so_and_keeps_the_sr(sr_path, pacs_port, outboxes, tmp_path):
    """A real SCP (pynetdicom: our own listener) that supports only CT/RTSTRUCT/SEG storage
    refuses the only proposed context, so the association cannot carry the SR."""
    from service.ingest.index import StudyIndex
    from service.ingest.receive import ReceiveDirectory
    from service.ingest.scp import StorageHandlers, build_ae, start_listener
    from service.ingest.spool import Spool

    index = StudyIndex(tmp_path / "scp" / "index.sqlite")
    server = start_listener(build_ae(PACS_AE, 2), LOOPBACK, pacs_port,
                            StorageHandlers(Spool(tmp_path / "scp" / "spool"), index,
                                            ReceiveDirectory(tmp_path / "scp" / "receiving")))
    try:
        outbox = outboxes(_pacs(pacs_port))
        outbox.enqueue("pacs", sr_path)
        assert outbox.deliver_due() == 1
    finally:
        server.shutdown()
        index.close()
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (PENDING, 1), delivery.last_error
    assert "accepts none of the proposed SOP classes (Comprehensive 3D SR Storage)" in delivery.last_error
    assert sr_path.exists()


# --- the EHR over https, its certificate from a private CA (fhir_tls_ca_file) ------------------


def test_an_ehr_with_a_private_ca_is_reached_with_fhir_tls_ca_file(bundle_path, outboxes, tmp_path):
    """SEKMET serving https with a certificate from the hospital's own CA: trusted through
    fhir_tls_ca_file; with the system's CAs, or another CA, the delivery fails saying why and is
    retried (the certificate may be fixed), and nothing reaches the EHR."""
    require_sekmet()
    hospital, rogue = make_authority(tmp_path / "pki", "Hospital"), make_authority(tmp_path / "rogue", "Rogue")
    ehr = FhirServer(tmp_path / "ehr-tls", tls=hospital.issue(tmp_path / "pki", "ehr", server=True),
                     tls_ca_file=hospital.cert)
    try:
        result, _ = make_study_result()
        patient_ref = f"Patient/{_register_patient(ehr, result.study.patient_id)}"
        for ca_file in (None, rogue.cert):
            environ = {"RCDS_FHIR_BASE_URL": ehr.base, **({"RCDS_FHIR_TLS_CA_FILE": str(ca_file)} if ca_file else {})}
            outbox = outboxes(configured_destinations(load_config(environ=environ)))
            outbox.enqueue("fhir", bundle_path)
            assert outbox.deliver_due() == 1
            state, attempts, error = only(outbox).state, only(outbox).attempts, only(outbox).last_error
            assert (state, attempts) == (PENDING, 1) and "CERTIFICATE_VERIFY_FAILED" in error, error
            outbox.stop()
        assert ehr.search("Observation") == []

        trusted = load_config(environ={"RCDS_FHIR_BASE_URL": ehr.base, "RCDS_FHIR_TLS_CA_FILE": str(hospital.cert)})
        outbox = outboxes(configured_destinations(trusted))
        assert outbox.deliver_due(now=time.time() + FAR_FUTURE) == 1
        assert (only(outbox).state, only(outbox).last_error) == (DELIVERED, None)
        _assert_results_in_ehr(ehr, patient_ref, version="1")
    finally:
        ehr.stop()


def test_smart_over_https_trusts_fhir_tls_ca_file_for_the_token_endpoint_too(bundle_path, outboxes, tmp_path):
    """SMART discovery and the token request go to the EHR's https endpoints: the same CA."""
    require_sekmet()
    hospital = make_authority(tmp_path / "pki", "Hospital")
    private, public = _private_key(tmp_path / "keys", "EC")
    ehr = FhirServer(tmp_path / "ehr-smart-tls", tls=hospital.issue(tmp_path / "pki", "ehr", server=True),
                     tls_ca_file=hospital.cert, server_auth={
                         "types": ["smart"], "enforce_scopes": True,
                         "smart_clients": [{"client_id": CLIENT_ID, "public_key_path": str(public),
                                            "scopes": "system/*.cruds"}]})
    try:
        config = load_config(environ={
            "RCDS_FHIR_BASE_URL": ehr.base, "RCDS_FHIR_TLS_CA_FILE": str(hospital.cert),
            "RCDS_FHIR_SMART_CLIENT_ID": CLIENT_ID, "RCDS_FHIR_SMART_PRIVATE_KEY_FILE": str(private),
            "RCDS_FHIR_SMART_SCOPE": "system/*.cruds"})
        (ehr_destination,) = configured_destinations(config)
        assert isinstance(ehr_destination, EhrByFhir) and ehr_destination.authorization is not None
        ehr.bearer = ehr_destination.authorization.header().removeprefix("Bearer ")  # the test's own reads
        _assert_delivered_at_once(ehr, configured_destinations(config), bundle_path, outboxes)
    finally:
        ehr.stop()


def test_an_unusable_fhir_tls_ca_file_stops_the_start(tmp_path):
    (tmp_path / "not-a-ca.pem").write_text("not PEM")
    config = load_config(environ={"RCDS_FHIR_BASE_URL": "https://ehr.example/fhir",
                                  "RCDS_FHIR_TLS_CA_FILE": str(tmp_path / "not-a-ca.pem")})
    with pytest.raises(ConfigError, match="fhir_tls_ca_file: "):
        configured_destinations(config)
