"""Settings precedence and validation."""

import base64
import dataclasses
import json
import re
from pathlib import Path

import pytest

from service.config import Config, load_config
from service.errors import ConfigError
from service.outputs.fhir import FhirSettings

REPO = Path(__file__).resolve().parents[2]


def test_defaults_match_the_design():
    config = load_config(environ={})
    assert (config.dicom_ae_title, config.dicom_port, config.http_port) == ("RADIOMICS_CDS", 11112, 8080)
    assert config.scorer_address.endswith(":50051") and config.dicom_max_associations == 10


def test_the_fhir_settings_default_as_the_fhir_builders_do():
    """The deployed defaults and the builders' own (warm-up, offline commands, tests) are one."""
    assert FhirSettings.from_config(load_config(environ={})) == FhirSettings()


def test_the_fhir_result_status_is_one_fhir_knows_and_the_site_chose():
    assert FhirSettings.from_config(load_config(environ={})).result_status == "preliminary"
    site = load_config(environ={"RCDS_FHIR_RESULT_STATUS": "final", "RCDS_PATIENT_IDENTIFIER_SYSTEM": "urn:oid:1.2.3"})
    assert FhirSettings.from_config(site) == FhirSettings("urn:oid:1.2.3", "final")
    with pytest.raises(ConfigError, match="fhir_result_status must be one of preliminary, final, not 'verified'"):
        load_config(environ={"RCDS_FHIR_RESULT_STATUS": "verified"})


def test_yaml_then_environment_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dicom_port: 11200\nquiet_seconds: 5\nsite_mapping: {GTV_Mass_CT: other}\n")
    config = load_config(path, environ={"RCDS_DICOM_PORT": "11300", "RCDS_VAR_DIR": "/srv/rcds"})
    assert config.dicom_port == 11300 and config.quiet_seconds == 5.0
    assert config.var_dir == Path("/srv/rcds") and config.site_mapping == {"GTV_Mass_CT": "other"}
    assert load_config(path, environ={}, dicom_port=1).dicom_port == 1


@pytest.mark.parametrize("environ, message", [
    ({"RCDS_DICOM_PORT": "eleven"}, "dicom_port"),
    ({"RCDS_DICOM_AE_TITLE": "A_TITLE_LONGER_THAN_16"}, "dicom_ae_title"),
    ({"RCDS_QUIET_SECONDS": "100", "RCDS_HARD_CAP_SECONDS": "10"}, "hard_cap_seconds"),
    ({"RCDS_FHIR_BASE_URL": "https://ehr/fhir", "RCDS_FHIR_SMART_CLIENT_ID": "rcds"}, "fhir_smart_private_key_file"),
    ({"RCDS_FHIR_BASE_URL": "https://ehr/fhir", "RCDS_FHIR_SMART_CLIENT_ID": "rcds",
      "RCDS_FHIR_SMART_PRIVATE_KEY_FILE": "/k.pem", "RCDS_FHIR_BEARER_TOKEN": "t"}, "not both"),
    ({"RCDS_FHIR_BEARER_TOKEN": "t"}, "fhir_base_url"),
    ({"RCDS_MAX_FRAMES_PER_INSTANCE": "0"}, "max_frames_per_instance must be at least 1"),
    ({"RCDS_MAX_CONTOUR_POINTS": "-5"}, "max_contour_points must be at least 1"),
    ({"RCDS_SPOOL_RETENTION_DAYS": "-1"}, "spool_retention_days must not be negative"),
    ({"RCDS_SPOOL_RETENTION_DAYS": "a month"}, "setting spool_retention_days: cannot use 'a month'"),
    ({"RCDS_PACS_QUERY_INITIAL_BACKOFF_SECONDS": "0"}, "pacs_query_initial_backoff_seconds must be above 0"),
    ({"RCDS_PACS_QUERY_INITIAL_BACKOFF_SECONDS": "7200"}, "at most 3600 \\(the longest wait\\)"),
    ({"RCDS_PRIOR_DIMSE_PORT": "0"}, "prior_dimse_port must be a TCP port \\(1-65535\\)"),
])
def test_bad_values_stop_at_start_with_the_setting_named(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ=environ)


def test_the_spool_is_kept_for_ever_unless_a_retention_is_set(tmp_path):
    """0 by default, as before the setting existed: an upgrade removes nothing of its own accord."""
    assert load_config(environ={}).spool_retention_days == 0
    assert load_config(environ={"RCDS_SPOOL_RETENTION_DAYS": "7.5"}).spool_retention_days == 7.5
    path = tmp_path / "c.yaml"
    path.write_text("spool_retention_days: 30\n")
    assert load_config(path, environ={}).spool_retention_days == 30.0


def test_instance_limits_come_from_the_settings():
    limits = load_config(environ={"RCDS_MAX_ROWS": "1024", "RCDS_MAX_ROIS_PER_STRUCTURE_SET": "50"}).instance_limits
    assert (limits.max_rows, limits.max_rois_per_structure_set, limits.max_columns) == (1024, 50, 4096)


def test_unknown_yaml_key_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dicom_prot: 1\n")
    with pytest.raises(ConfigError, match="dicom_prot"):
        load_config(path, environ={})


def test_a_smart_key_that_cannot_sign_stops_the_start(tmp_path):
    """An RSA key signs RS384 and an EC P-384 key ES384; anything else is refused by name."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from service.outputs.destinations import fhir_authorization
    from tests.support.certs import write_key_pair

    key, _ = write_key_pair(tmp_path, "p256", ec.generate_private_key(ec.SECP256R1()))
    config = load_config(environ={"RCDS_FHIR_BASE_URL": "https://ehr/fhir", "RCDS_FHIR_SMART_CLIENT_ID": "rcds",
                                  "RCDS_FHIR_SMART_PRIVATE_KEY_FILE": str(key)})
    with pytest.raises(ConfigError, match="P-384"):
        fhir_authorization(config)
    (tmp_path / "garbage.pem").write_text("not a key")
    # SEC 1's ECPrivateKey on secp112r1 (OID 1.3.132.0.6), a curve OpenSSL names and the
    # cryptography package refuses: its own exception, UnsupportedAlgorithm, not a ValueError.
    sec1 = bytes([0x30, 0x1C, 0x02, 0x01, 0x01, 0x04, 0x0E, *range(1, 15),
                  0xA0, 0x07, 0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x06])
    (tmp_path / "secp112r1.pem").write_bytes(b"-----BEGIN EC PRIVATE KEY-----\n" + base64.encodebytes(sec1)
                                             + b"-----END EC PRIVATE KEY-----\n")
    for unusable, why in (("garbage.pem", "ValueError"), ("secp112r1.pem", "UnsupportedAlgorithm")):
        with pytest.raises(ConfigError, match=rf"cannot load .*\({why}\)"):
            fhir_authorization(load_config(environ={"RCDS_FHIR_BASE_URL": "https://ehr/fhir",
                                                    "RCDS_FHIR_SMART_CLIENT_ID": "rcds",
                                                    "RCDS_FHIR_SMART_PRIVATE_KEY_FILE": str(tmp_path / unusable)}))


def test_every_bound_the_schema_sets_on_a_setting_the_service_checks_too() -> None:
    """A value given in the environment or a YAML file meets no schema: each minimum and
    maximum values.schema.json sets on a setting, crossed, stops the service's own load_config."""
    schema = json.loads((REPO / "deploy" / "helm" / "radiomics-cds" / "values.schema.json").read_text())["properties"]["config"]["properties"]
    crossings = []
    for name, spec in schema.items():
        step = 1 if spec.get("type") == "integer" else 0.5
        if "exclusiveMinimum" in spec:
            crossings.append((name, spec["exclusiveMinimum"]))
        if "minimum" in spec:
            crossings.append((name, spec["minimum"] - step))
        if "maximum" in spec:
            crossings.append((name, spec["maximum"] + step))
    assert len(crossings) > 20  # the schema bounds many settings; the loop must see them
    accepted = []
    for name, value in crossings:
        try:
            load_config(environ={f"RCDS_{name.upper()}": str(value)})
            accepted.append((name, value))
        except ConfigError:
            pass
    assert accepted == []


def test_the_readme_documents_every_setting_and_no_other() -> None:
    """The README's Configuration table has a row for each setting (by name, with its
    environment variable), and none for a setting the service does not have."""
    text = (REPO / "README.md").read_text()
    rows = [line.split("|") for line in text[text.index("## Configuration"):text.index("\n## ", text.index("## Configuration") + 1)]
            .splitlines() if line.startswith("| `")]
    documented = {name: row[2] for row in rows for name in re.findall(r"`([a-z_0-9]+)`", row[1])}
    assert set(documented) == {field.name for field in dataclasses.fields(Config)}
    single = [(re.findall(r"`([a-z_0-9]+)`", row[1]), row[2]) for row in rows]
    assert [(names[0], env) for names, env in single if len(names) == 1 and f"`RCDS_{names[0].upper()}`" not in env] == []
