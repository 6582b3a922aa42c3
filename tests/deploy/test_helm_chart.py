"""The Helm chart (deploy/helm/radiomics-cds), rendered offline and checked as a cluster would.

A chart that renders is not yet a chart that works: a misspelt environment variable is silently
ignored by the service, a Service selector that matches no pod leaves the PACS talking to
nobody, a config.yaml key the service does not know stops every pod at start. So each values
case (the defaults and deploy/helm/radiomics-cds/ci/*.yaml) is rendered once with Helm's own Go
SDK (helm-python-sdk: lint, values.schema.json, templates), and then
- the wiring is asserted (volumes, Services, probes, TLS and credential files, NetworkPolicy),
- config.yaml and the container environment are loaded with the service's own load_config,
- every object is validated by kubernetes-validate --strict against the chart's oldest
  (kubeVersion) and the newest Kubernetes it knows,
- checkov scans everything in one run: no failed check, and only the skips the chart states,
  each with its reason, in the object it concerns.

Tools: helm-python-sdk and kubernetes-validate in the project's virtualenv; checkov in its own
(scripts/install-deploy-tools: its dependencies clash with our pins), found through RCDS_CHECKOV,
.venv-tools/bin/checkov or PATH.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from service.roles.scorer import scoring_context
from service.config import SECRET_FILES, Config, load_config
from tests.support.external import missing_dependency, require_external, require_package

pytestmark = pytest.mark.external

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "radiomics-cds"
RELEASE, NAMESPACE = "rcds", "imaging"
FULLNAME = "rcds-radiomics-cds"
# The chart's kubeVersion floor (gRPC probes are GA from 1.27) and the newest Kubernetes that
# kubernetes-validate (pinned) has schemas for.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
# Each case lists the calling AE titles accepted or opts out of the allowlist explicitly (the
# chart refuses neither): "default" is the chart's defaults plus the allowlist it requires.
ALLOWLIST = {"config": {"dicom_allowed_calling_aes": ["PACS_A"]}}
CASES: dict[str, str | dict[str, Any]] = {
    "default": ALLOWLIST,
    "tls-secrets-monitoring": "tls-secrets-monitoring-values.yaml",
    "fhir-smart": "fhir-smart-values.yaml",
    "hardened": "hardened-values.yaml",
    "extensions": "extensions-values.yaml",
}
# Config fields that values.schema.json deliberately keeps out of `config`: the chart sets them
# (ports, paths, the scorer target, credentials from Secrets, ordered ROI-name rules) or they
# stay at their defaults inside a pod (listen on all addresses; scorer_metrics_port is serve's,
# and the chart runs the scorer as its own Deployment).
SET_BY_CHART = {
    "dicom_host", "dicom_port", "http_host", "http_port", "var_dir", "scorer_address", "scorer_metrics_port",
    "dicom_tls_cert_file", "dicom_tls_key_file", "dicom_tls_ca_file",
    "pacs_tls_ca_file", "pacs_tls_cert_file", "pacs_tls_key_file",
    "scorer_tls_cert_file", "scorer_tls_key_file", "scorer_tls_client_ca_file",
    "scorer_tls", "scorer_tls_ca_file", "scorer_tls_client_cert_file", "scorer_tls_client_key_file",
    "scorer_tls_server_name",
    "fhir_bearer_token", "fhir_bearer_token_file", "fhir_smart_private_key_file",
    "stow_bearer_token", "stow_bearer_token_file", "stow_tls_ca_file", "fhir_tls_ca_file",
    "stow_basic_auth", "stow_basic_auth_file", "prior_dicomweb_bearer_token", "prior_dicomweb_bearer_token_file",
    "prior_dicomweb_basic_auth", "prior_dicomweb_basic_auth_file", "prior_dicomweb_tls_ca_file",
    "signature_file", "extraction_settings_file", "location_name_rules",
}
# Placeholders standing in a values case for Secrets the site manages (existingSecret).
EXISTING_SECRET_VALUE = "site:value-from-existing-secret"  # a token, or HTTP Basic's user:password


def _helm() -> Any:
    require_package("helm_python", "pip install helm-python-sdk==0.2.2")
    import helm_python

    return helm_python


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One values case rendered: the values given and the Kubernetes objects produced."""

    case: str
    values: dict[str, Any]
    manifests: dict[str, str]

    @functools.cached_property
    def objects(self) -> list[dict[str, Any]]:
        return [doc for name, text in self.manifests.items() if name.endswith(".yaml")
                for doc in yaml.safe_load_all(text) if doc]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [obj for obj in self.all(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.case}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [obj for obj in self.all(kind) if obj["metadata"]["name"] == name]
        return found[0] if found else None

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.get("StatefulSet", f"{FULLNAME}-ingest")

    @property
    def deployment(self) -> dict[str, Any]:
        return self.get("Deployment", f"{FULLNAME}-scorer")

    def workloads(self) -> Iterator[dict[str, Any]]:
        yield self.statefulset
        yield self.deployment


def _values(case: str) -> dict[str, Any]:
    source = CASES[case]
    return copy.deepcopy(source) if isinstance(source, dict) else yaml.safe_load((CHART / "ci" / source).read_text())


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _allowing(values: dict[str, Any]) -> dict[str, Any]:
    """Inline values plus the calling-AE allowlist every render needs."""
    return _merged(ALLOWLIST, values)


def _render(chart: Any, values: dict[str, Any], case: str = "inline") -> Rendered:
    return Rendered(case, values, chart.render(values, name=RELEASE, namespace=NAMESPACE))


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with _helm().Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def rendered(chart: Any) -> dict[str, Rendered]:
    return {case: _render(chart, _values(case), case) for case in CASES}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    return rendered[request.param]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def _mount_of(workload: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume mount containing `path` (deepest mount wins) and its volume."""
    mounts = [m for m in _container(workload)["volumeMounts"]
              if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on no volume"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    claims = {c["metadata"]["name"]: c for c in workload["spec"].get("volumeClaimTemplates", [])}
    return mount, volumes.get(mount["name"]) or claims[mount["name"]]


# --- Helm: lint and values.schema.json ------------------------------------------------------

@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_lint_finds_no_warning_or_error(case: Rendered, kube_version: str) -> None:
    report = _helm().lint(CHART, case.values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}")
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [] and report["errors"] == []


@pytest.mark.parametrize(("values", "named"), [
    ({"image": {"tagg": "0.1.0"}}, "tagg"),
    ({"config": {"quiet_second": 30}}, "quiet_second"),
    ({"config": {"spool_retention_days": -1}}, "/config/spool_retention_days"),
    ({"config": {"prior_dimse_port": 0}}, "/config/prior_dimse_port"),  # a peer's port, as Config checks
    ({"config": {"log_level": "verbose"}}, "/config/log_level"),
    ({"config": {"fhir_bearer_token": "s3cret"}}, "fhir_bearer_token"),  # credentials never in config.yaml
    ({"config": {"scorer_tls_cert_file": "/s.crt"}}, "scorer_tls_cert_file"),  # the chart mounts TLS files
    ({"ingest": {"terminationGracePeriodSeconds": "120"}}, "/ingest/terminationGracePeriodSeconds"),
    ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"networkPolicy": {"dicomFromCidrs": ["10.0.0.1"]}}, "/networkPolicy/dicomFromCidrs/0"),
    ({"networkPolicy": {"priorCidrs": ["10.0.0.0/8"], "priorPorts": []}}, "/networkPolicy/priorPorts"),  # every port
    ({"ingest": {"podLabels": {"app.kubernetes.io/component": "x"}}},
     "invalid propertyName .app.kubernetes.io/component."),  # a selector label
    ({"scorer": {"extraEnv": [{"value": "no name"}]}}, "/scorer/extraEnv/0"),
    ({"ingest": {"extraVolumeMounts": [{"name": "v"}]}}, "/ingest/extraVolumeMounts/0"),
    ({"image": {"registry": "https://registry.example"}}, "/image/registry"),
    ({"stow": {"basicAuth": {"value": "no-colon"}}}, "/stow/basicAuth/value"),
    ({"stow": {"basicAuth": {"value": "rcds: "}}}, "/stow/basicAuth/value"),
    ({"config": {"prior_dicomweb_url": "https://rcds:s3cret@pacs.example/dicom-web"}}, "/config/prior_dicomweb_url"),
    ({"config": {"fhir_base_url": "https://rcds@ehr.example/fhir"}}, "/config/fhir_base_url"),
    ({"priors": {"dicomweb": {"basicAuth": {"value": "rcds :s3cret"}}}}, "/priors/dicomweb/basicAuth/value"),
    ({"prometheusRule": {"enabled": True, "runbookBaseUrl": "git.example/radiomics-cds"}}, "/prometheusRule/runbookBaseUrl"),
])
def test_schema_refuses_wrong_values_naming_them(chart: Any, values: dict[str, Any], named: str) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmValuesError, match=named):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError, match=named):  # and no install renders with them
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(("values", "message"), [
    ({"dicom": {"tls": {"enabled": True}}}, "set dicom.tls.existingSecret, or dicom.tls.certificate"),
    ({"dicom": {"tls": {"enabled": True, "certificate": "C", "privateKey": "K", "requireClientCertificate": True}}},
     "set dicom.tls.caCertificate"),
    ({"fhir": {"bearerToken": {"value": "t"}}}, "config.fhir_base_url is not"),
    ({"config": {"fhir_base_url": "https://ehr.example/fhir", "fhir_smart_client_id": "c"},
      "fhir": {"bearerToken": {"value": "t"}, "smart": {"privateKey": "K"}}}, "not both"),
    ({"config": {"fhir_base_url": "https://ehr.example/fhir"}, "fhir": {"smart": {"existingSecret": "k"}}},
     "config.fhir_smart_client_id"),
    ({"pacsTls": {"existingSecret": "ca"}}, "config.pacs_tls is not true"),
    ({"fhir": {"tls": {"existingSecret": "ca"}}}, "fhir.tls is set but config.fhir_base_url is not"),
    ({"fhir": {"smart": {"existingSecret": "k"}}}, "fhir.smart is set but config.fhir_base_url is not"),
    ({"stow": {"bearerToken": {"value": "t"}}}, "stow.bearerToken is set but config.stow_url is not"),
    ({"stow": {"basicAuth": {"value": "u:p"}}}, "stow.basicAuth is set but config.stow_url is not"),
    ({"stow": {"tls": {"existingSecret": "ca"}}}, "stow.tls is set but config.stow_url is not"),
    ({"priors": {"dicomweb": {"basicAuth": {"existingSecret": "s"}}}},
     "priors.dicomweb.basicAuth is set but config.prior_dicomweb_url is not"),
    ({"priors": {"dicomweb": {"tls": {"existingSecret": "ca"}}}},
     "priors.dicomweb.tls is set but config.prior_dicomweb_url is not"),
    ({"config": {"stow_url": "https://archive.example/dicom-web"},
      "stow": {"bearerToken": {"value": "t"}, "basicAuth": {"existingSecret": "s"}}}, "stow: use bearerToken or basicAuth, not both"),
    ({"config": {"prior_dicomweb_url": "https://pacs.example/dicom-web", "prior_providers": ["dicomweb"]},
      "priors": {"dicomweb": {"bearerToken": {"existingSecret": "s"}, "basicAuth": {"value": "u:p"}}}},
     "priors.dicomweb: use bearerToken or basicAuth, not both"),
    ({"config": {"stow_url": "https://archive.example/dicom-web", "prior_dicomweb_url": "https://pacs.example/dicom-web",
                 "prior_providers": ["dicomweb"]},
      "stow": {"basicAuth": {"value": "u:p", "key": "basic"}}, "priors": {"dicomweb": {"basicAuth": {"value": "u:q", "key": "basic"}}}},
     "stow.basicAuth and priors.dicomweb.basicAuth have the same key basic"),
    ({"config": {"stow_url": "http://archive.example/dicom-web"}, "stow": {"basicAuth": {"value": "u:p"}}},
     "stow.basicAuth needs an https config.stow_url"),
    ({"config": {"prior_dicomweb_url": "https://pacs.example/dicom-web", "prior_providers": ["dimse"],
                 "pacs_host": "pacs.example"},
      "priors": {"dicomweb": {"basicAuth": {"existingSecret": "s"}}}}, "config.prior_providers has no dicomweb"),
    ({"config": {"stow_url": "https://archive.example/dicom-web"},
      "stow": {"bearerToken": {"value": "t", "existingSecret": "s"}}}, "stow.bearerToken: set existingSecret or value"),
    ({"scorerTls": {"enabled": True}}, "set scorerTls.serverSecret"),
    ({"scorerTls": {"clientSecret": "rcds-ingest-client"}}, "scorerTls.enabled is not true"),
    ({"config": {"scorer_grace_seconds": 60}}, "must exceed config.scorer_grace_seconds"),
    ({"scorer": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}}, "must not exceed"),
])
def test_inconsistent_values_stop_the_render_with_a_reason(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(_helm().HelmRenderError, match=message):
        chart.render(_allowing(values), name=RELEASE, namespace=NAMESPACE)


# --- the calling-AE allowlist -----------------------------------------------------------------

@pytest.mark.parametrize("values", [
    {},
    {"config": {"dicom_allowed_calling_aes": []}},
    {"dicom": {"allowAnyCallingAE": False}},
    _values("hardened") | {"config": {**_values("hardened")["config"], "dicom_allowed_calling_aes": []}},
])
def test_an_empty_calling_ae_allowlist_stops_the_render_naming_the_value_and_the_opt_out(
        chart: Any, values: dict[str, Any]) -> None:
    """Anyone who reaches the DICOM port could otherwise have results written for any patient."""
    with pytest.raises(_helm().HelmRenderError) as raised:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    message = str(raised.value)
    assert "config.dicom_allowed_calling_aes is empty" in message
    assert "for any patient" in message and "set dicom.allowAnyCallingAE=true" in message


def test_the_explicit_opt_out_renders_a_listener_open_to_any_calling_ae(chart: Any, tmp_path: Path) -> None:
    case = _render(chart, {"dicom": {"allowAnyCallingAE": True}}, "opt-out")
    for workload in case.workloads():
        assert _load(case, workload, tmp_path).dicom_allowed_calling_aes == ()
    assert "RCDS_DICOM_ALLOWED_CALLING_AES" not in _env(_container(case.statefulset))
    assert "WARNING: dicom.allowAnyCallingAE is true" in case.manifests["radiomics-cds/templates/NOTES.txt"]


def test_the_opt_out_and_an_allowlist_together_stop_the_render(chart: Any) -> None:
    with pytest.raises(_helm().HelmRenderError, match="dicom.allowAnyCallingAE is true but config.dicom_allowed_calling_aes"):
        chart.render(_allowing({"dicom": {"allowAnyCallingAE": True}}), name=RELEASE, namespace=NAMESPACE)


def test_every_case_lists_calling_aes_or_opts_out_and_the_config_carries_the_list(
        case: Rendered, tmp_path: Path) -> None:
    allowed = case.values.get("config", {}).get("dicom_allowed_calling_aes", [])
    opted_out = case.values.get("dicom", {}).get("allowAnyCallingAE", False)
    assert bool(allowed) != opted_out
    assert opted_out == (case.case == "fhir-smart")  # the one case that opts out
    for workload in case.workloads():  # the ingest's listener and the scorer's copy alike
        assert _load(case, workload, tmp_path).dicom_allowed_calling_aes == tuple(allowed)
    notes = case.manifests["radiomics-cds/templates/NOTES.txt"]
    assert f"Calling AE titles accepted: {', '.join(allowed) or 'any (dicom.allowAnyCallingAE)'}" in notes
    # the test command the notes suggest calls as an accepted AE (send's own default is refused)
    (command,) = [line.strip() for line in notes.splitlines() if line.strip().startswith("radiomics-cds send")]
    assert (f"--calling-aet {allowed[0]}" in command) if allowed else ("--calling-aet" not in command)


@pytest.mark.parametrize("level", ["Info", "WARNING", "debug", "eRRor"])
def test_schema_takes_a_log_level_in_any_case_as_the_service_does(chart: Any, level: str) -> None:
    chart.validate_schema({"config": {"log_level": level}})
    assert load_config(environ={"RCDS_LOG_LEVEL": level}).log_level == level


def test_schema_config_lists_exactly_the_settings_the_chart_leaves_to_the_user() -> None:
    """A setting added to the service must be added to values.schema.json (or to the chart)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    accepted = set(schema["properties"]["config"]["properties"])
    fields = {field.name for field in dataclasses.fields(Config)}
    assert accepted <= fields, f"schema accepts settings the service does not know: {accepted - fields}"
    assert fields - accepted == SET_BY_CHART


# --- wiring ---------------------------------------------------------------------------------

def test_ingest_spool_is_a_claim_per_pod_mounted_at_the_var_dir(case: Rendered) -> None:
    ingest = case.statefulset
    var_dir = _env(_container(ingest))["RCDS_VAR_DIR"]["value"]
    mount, volume = _mount_of(ingest, str(PurePosixPath(var_dir) / "spool"))
    assert mount["mountPath"] == var_dir
    assert volume in ingest["spec"]["volumeClaimTemplates"]  # a claim per pod, not a pod volume
    assert volume["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert ingest["spec"]["serviceName"] == f"{FULLNAME}-ingest-headless"
    assert case.find("Service", ingest["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


def test_dicom_service_keeps_a_pacs_on_one_ingest_pod(case: Rendered) -> None:
    service = case.get("Service", f"{FULLNAME}-dicom")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    assert _matches(service["spec"]["selector"], _pod_labels(case.statefulset))
    assert not _matches(service["spec"]["selector"], _pod_labels(case.deployment))
    (port,) = service["spec"]["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in _container(case.statefulset)["ports"]}
    assert container_ports[port["targetPort"]] == port["port"] == int(_env(_container(case.statefulset))["RCDS_DICOM_PORT"]["value"])


def test_ingest_reaches_every_scorer_pod_through_the_headless_service(case: Rendered) -> None:
    service = case.get("Service", f"{FULLNAME}-scorer-headless")
    assert service["spec"]["clusterIP"] == "None"
    assert _matches(service["spec"]["selector"], _pod_labels(case.deployment))
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    scorer_ports = {p["name"]: p["containerPort"] for p in _container(case.deployment)["ports"]}
    assert scorer_ports[grpc_port["targetPort"]] == grpc_port["port"] == 50051
    target = _env(_container(case.statefulset))["RCDS_SCORER_ADDRESS"]["value"]
    assert target == f"dns:///{FULLNAME}-scorer-headless.{NAMESPACE}.svc.cluster.local:{grpc_port['port']}"
    assert _env(_container(case.deployment))["RCDS_SCORER_ADDRESS"]["value"] == "0.0.0.0:50051"


def test_probes_use_grpc_health_for_the_scorer_and_http_for_the_ingest(case: Rendered) -> None:
    """The kubelet's gRPC probes cannot speak TLS: a TLS scorer is probed on its HTTP port."""
    scorer = _container(case.deployment)
    tls = case.values.get("scorerTls", {}).get("enabled", False)
    scorer_probes = {probe: scorer[probe].get("grpc") or scorer[probe]["httpGet"]
                     for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert scorer_probes == ({"startupProbe": {"path": "/healthz", "port": "metrics"},
                              "livenessProbe": {"path": "/healthz", "port": "metrics"},
                              "readinessProbe": {"path": "/readyz", "port": "metrics"}} if tls
                             else dict.fromkeys(scorer_probes, {"port": 50051}))
    assert {p["name"]: p["containerPort"] for p in scorer["ports"]}["metrics"] == 8080
    assert _env(scorer)["RCDS_HTTP_PORT"]["value"] == "8080"
    ingest = _container(case.statefulset)
    http_port = {p["name"]: p["containerPort"] for p in ingest["ports"]}["http"]
    assert http_port == int(_env(ingest)["RCDS_HTTP_PORT"]["value"])
    paths = {probe: ingest[probe]["httpGet"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"startupProbe": {"path": "/healthz", "port": "http"},
                     "livenessProbe": {"path": "/healthz", "port": "http"},
                     "readinessProbe": {"path": "/readyz", "port": "http"}}


def test_ingest_has_time_to_finish_a_study_on_sigterm(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    smart = rendered["fhir-smart"]  # scorer_grace_seconds 60: the pod's grace period exceeds it
    assert smart.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90


def _secret_file_env(case: Rendered, prefix: str) -> dict[str, str]:
    return {name: item["value"] for name, item in _env(_container(case.statefulset)).items()
            if name.startswith(prefix) and name.endswith("_FILE")}


def _keys_of(case: Rendered, secret_name: str, standard: set[str]) -> set[str]:
    """A chart-made Secret's keys; for a Secret the site manages, the keys its type defines."""
    made = case.find("Secret", secret_name)
    return set(made["data"]) if made else standard


@pytest.mark.parametrize(("case_name", "secret", "expected"), [
    ("tls-secrets-monitoring", "rcds-dicom-tls", {"RCDS_DICOM_TLS_CERT_FILE", "RCDS_DICOM_TLS_KEY_FILE", "RCDS_DICOM_TLS_CA_FILE"}),
    ("hardened", f"{FULLNAME}-dicom-tls", {"RCDS_DICOM_TLS_CERT_FILE", "RCDS_DICOM_TLS_KEY_FILE"}),
    ("default", None, set()),
])
def test_dicom_tls_files_are_inside_the_mounted_secret(rendered: dict[str, Rendered], case_name: str,
                                                      secret: str | None, expected: set[str]) -> None:
    case = rendered[case_name]
    files = _secret_file_env(case, "RCDS_DICOM_TLS_")
    assert set(files) == expected
    for path in files.values():
        mount, volume = _mount_of(case.statefulset, path)
        assert mount["readOnly"] is True
        assert volume["secret"]["secretName"] == secret
        assert volume["secret"]["defaultMode"] == 0o440  # the service's group (fsGroup) only
        assert PurePosixPath(path).name in _keys_of(case, secret, {"tls.crt", "tls.key", "ca.crt"})


def _files_from_secrets(workload: dict[str, Any], prefix: str) -> dict[str, tuple[str, str]]:
    """RCDS_<prefix>*_FILE variables -> (Secret name, key) of the file each points at."""
    files = {}
    for name, item in _env(_container(workload)).items():
        if name.startswith(prefix) and name.endswith("_FILE"):
            mount, volume = _mount_of(workload, item["value"])
            assert mount["readOnly"] is True and volume["secret"]["defaultMode"] == 0o440, name
            (key,) = [i["key"] for i in volume["secret"]["items"] if i["path"] == PurePosixPath(item["value"]).name]
            files[name] = (volume["secret"]["secretName"], key)
    return files


@pytest.mark.parametrize(("case_name", "ingest", "scorer"), [
    ("hardened",
     {"RCDS_SCORER_TLS_CA_FILE": ("rcds-scorer-tls", "ca.crt"),
      "RCDS_SCORER_TLS_CLIENT_CERT_FILE": ("rcds-ingest-scorer-client", "tls.crt"),
      "RCDS_SCORER_TLS_CLIENT_KEY_FILE": ("rcds-ingest-scorer-client", "tls.key")},
     {"RCDS_SCORER_TLS_CERT_FILE": ("rcds-scorer-tls", "tls.crt"), "RCDS_SCORER_TLS_KEY_FILE": ("rcds-scorer-tls", "tls.key"),
      "RCDS_SCORER_TLS_CLIENT_CA_FILE": ("rcds-ingest-scorer-client", "ca.crt")}),
    ("tls-secrets-monitoring",
     {"RCDS_SCORER_TLS_CA_FILE": ("rcds-scorer-tls", "ca.crt")},
     {"RCDS_SCORER_TLS_CERT_FILE": ("rcds-scorer-tls", "tls.crt"), "RCDS_SCORER_TLS_KEY_FILE": ("rcds-scorer-tls", "tls.key")}),
    ("default", {}, {}),
])
def test_scorer_tls_files_come_from_their_secrets_and_no_pod_gets_the_other_key(
        rendered: dict[str, Rendered], case_name: str, ingest: dict, scorer: dict) -> None:
    """Each pod mounts its own certificate and key, and only ca.crt from the other's Secret."""
    case = rendered[case_name]
    assert _files_from_secrets(case.statefulset, "RCDS_SCORER_TLS_") == ingest
    assert _files_from_secrets(case.deployment, "RCDS_SCORER_TLS_") == scorer


def test_pacs_tls_files_are_inside_the_mounted_secret(rendered: dict[str, Rendered]) -> None:
    case = rendered["tls-secrets-monitoring"]
    files = _secret_file_env(case, "RCDS_PACS_TLS_")
    assert set(files) == {"RCDS_PACS_TLS_CA_FILE", "RCDS_PACS_TLS_CERT_FILE", "RCDS_PACS_TLS_KEY_FILE"}
    for path in files.values():
        assert _mount_of(case.statefulset, path)[1]["secret"]["secretName"] == "rcds-pacs-ca"


@pytest.mark.parametrize(("case_name", "secret", "key"), [
    ("fhir-smart", f"{FULLNAME}-credentials", "smart-private-key.pem"),
    ("hardened", "rcds-smart-client", "client-key.pem"),
])
def test_smart_private_key_is_a_file_from_its_secret(rendered: dict[str, Rendered], case_name: str,
                                                      secret: str, key: str) -> None:
    case = rendered[case_name]
    path = _env(_container(case.statefulset))["RCDS_FHIR_SMART_PRIVATE_KEY_FILE"]["value"]
    _, volume = _mount_of(case.statefulset, path)
    assert volume["secret"]["secretName"] == secret and volume["secret"]["defaultMode"] == 0o440
    assert volume["secret"]["items"] == [{"key": key, "path": PurePosixPath(path).name}]
    made = case.find("Secret", secret)
    assert made is None or key in made["data"]


@pytest.mark.parametrize(("case_name", "variable", "secret", "key"), [
    ("tls-secrets-monitoring", "RCDS_FHIR_BEARER_TOKEN_FILE", "rcds-ehr-credentials", "token"),
    ("tls-secrets-monitoring", "RCDS_STOW_BEARER_TOKEN_FILE", "rcds-archive-credentials", "token"),
    ("tls-secrets-monitoring", "RCDS_STOW_TLS_CA_FILE", "rcds-archive-ca", "ca.crt"),
    ("tls-secrets-monitoring", "RCDS_FHIR_TLS_CA_FILE", "rcds-ehr-ca", "ca.crt"),
    ("tls-secrets-monitoring", "RCDS_PRIOR_DICOMWEB_BASIC_AUTH_FILE", "rcds-pacs-web-credentials", "basic"),
    ("tls-secrets-monitoring", "RCDS_PRIOR_DICOMWEB_TLS_CA_FILE", "rcds-pacs-web-ca", "ca.crt"),
    ("fhir-smart", "RCDS_STOW_BASIC_AUTH_FILE", f"{FULLNAME}-credentials", "stow-basic-auth"),
    ("fhir-smart", "RCDS_PRIOR_DICOMWEB_BEARER_TOKEN_FILE", f"{FULLNAME}-credentials", "prior-dicomweb-bearer-token"),
])
def test_tokens_and_the_archive_ca_are_files_from_their_secrets(rendered: dict[str, Rendered], case_name: str,
                                                                variable: str, secret: str, key: str) -> None:
    """Mounted files, never environment values: a Secret's value in a variable is visible to
    anything that can read the pod's environment (and checkov's CKV_K8S_35)."""
    case = rendered[case_name]
    path = _env(_container(case.statefulset))[variable]["value"]
    _, volume = _mount_of(case.statefulset, path)
    assert volume["secret"]["secretName"] == secret and volume["secret"]["defaultMode"] == 0o440
    assert volume["secret"]["items"] == [{"key": key, "path": PurePosixPath(path).name}]
    made = case.find("Secret", secret)
    assert (made is None) == (case_name == "tls-secrets-monitoring") and (made is None or key in made["data"])
    assert not [item for item in _container(case.statefulset)["env"] if "valueFrom" in item]




@pytest.mark.parametrize("url", ["http://localhost/dicom-web", "HTTP://127.0.0.1:8042/dicom-web",
                                 "HTTPS://pacs.example/dicom-web"])
def test_credentials_render_with_a_loopback_or_https_url(chart: Any, url: str) -> None:
    """As the service's own check: http only on loopback (any case, with or without a port)."""
    values = {"config": {"prior_dicomweb_url": url, "prior_providers": ["dicomweb"]},
              "priors": {"dicomweb": {"basicAuth": {"value": "rcds:s3cret"}}}}
    environment = _env(_container(_render(chart, _allowing(values)).statefulset))
    assert "RCDS_PRIOR_DICOMWEB_BASIC_AUTH_FILE" in environment


def test_credentials_do_not_render_with_a_remote_http_url(chart: Any) -> None:
    values = {"config": {"prior_dicomweb_url": "http://localhost:8042@pacs.example/dicom-web",
                         "prior_providers": ["dicomweb"]}, "priors": {"dicomweb": {"basicAuth": {"value": "rcds:x"}}}}
    with pytest.raises(_helm().HelmValuesError):  # the schema refuses the user part first
        chart.render(_allowing(values), name=RELEASE, namespace=NAMESPACE)

def test_a_new_credential_value_restarts_the_ingest(chart: Any) -> None:
    """The service reads the SMART private key once at start (its token and Basic credential
    files it follows, a minute or two behind the Secret): a changed chart-made value changes the
    pod template (checksum/credentials), so that `helm upgrade` applies it at once."""
    def annotations(password: str) -> dict[str, str]:
        values = _allowing({"config": {"stow_url": "https://archive.example/dicom-web"},
                            "stow": {"basicAuth": {"value": f"rcds:{password}"}}})
        return _render(chart, values).statefulset["spec"]["template"]["metadata"]["annotations"]
    first, rotated = annotations("old"), annotations("new")
    assert first["checksum/credentials"] != rotated["checksum/credentials"]
    assert first["checksum/config"] == rotated["checksum/config"]

# --- the service's own settings -------------------------------------------------------------

def _container_environ(case: Rendered, container: dict[str, Any], etc_dir: Path) -> dict[str, str]:
    """The container's environment as the service would see it: Secret references resolved
    from the chart-made Secret (or a placeholder for the site's), config paths under etc_dir."""
    environ = {}
    for name, item in _env(container).items():
        if "value" in item:
            environ[name] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            made = case.find("Secret", ref["name"])
            environ[name] = base64.b64decode(made["data"][ref["key"]]).decode() if made else EXISTING_SECRET_VALUE
    environ["RCDS_CONFIG"] = str(etc_dir / PurePosixPath(environ["RCDS_CONFIG"]).name)
    return environ


def _write_config_volume(case: Rendered, workload: dict[str, Any], etc_dir: Path) -> None:
    """The workload's ConfigMap volume as mounted at /etc/radiomics-cds (its items: key -> path),
    written to etc_dir with the paths in it pointing at etc_dir."""
    mount, volume = _mount_of(workload, "/etc/radiomics-cds/config.yaml")
    assert mount["mountPath"] == "/etc/radiomics-cds"
    data = case.get("ConfigMap", volume["configMap"]["name"])["data"]
    for item in volume["configMap"]["items"]:
        (etc_dir / item["path"]).write_text(data[item["key"]].replace("/etc/radiomics-cds/", f"{etc_dir}/"))


def _write_secret_files(case: Rendered, workload: dict[str, Any], environ: dict[str, str], etc_dir: Path) -> None:
    """The credential files the service reads at start (*_file settings), as mounted from their
    Secret (the chart-made one's value, or a placeholder for the site's), written under etc_dir
    with the variables pointing there."""
    for file_setting in SECRET_FILES:
        variable = f"RCDS_{file_setting.upper()}"
        if variable not in environ:
            continue
        _, volume = _mount_of(workload, environ[variable])
        made = case.find("Secret", volume["secret"]["secretName"])
        (item,) = volume["secret"]["items"]
        path = etc_dir / "secrets" / file_setting
        path.parent.mkdir(exist_ok=True)
        path.write_text(base64.b64decode(made["data"][item["key"]]).decode() if made else EXISTING_SECRET_VALUE)
        environ[variable] = str(path)


def _load(case: Rendered, workload: dict[str, Any], etc_dir: Path) -> Config:
    """The settings the service would run with in this workload's container."""
    etc_dir = etc_dir / case.case / workload["kind"]
    etc_dir.mkdir(parents=True)
    _write_config_volume(case, workload, etc_dir)
    environ = _container_environ(case, _container(workload), etc_dir)
    _write_secret_files(case, workload, environ, etc_dir)
    return load_config(environ=environ)


def test_both_roles_load_their_settings_with_the_service(case: Rendered, tmp_path: Path) -> None:
    """config.yaml + the environment pass the service's own validation, in each role."""
    ingest = _load(case, case.statefulset, tmp_path)
    scorer = _load(case, case.deployment, tmp_path)
    assert ingest.var_dir == Path("/var/lib/radiomics-cds") and ingest.dicom_port == 11112
    assert ingest.scorer_address.startswith("dns:///") and scorer.scorer_address == "0.0.0.0:50051"
    assert ingest.http_port == scorer.http_port == 8080


def test_settings_reach_the_service_as_written(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    tls = _load(rendered["tls-secrets-monitoring"], rendered["tls-secrets-monitoring"].statefulset, tmp_path)
    assert tls.dicom_allowed_calling_aes == ("ORTHANC", "NO")  # not False: YAML 1.1 reads a bare NO so
    assert (tls.pacs_host, tls.pacs_port, tls.pacs_tls) == ("pacs.imaging.example", 2762, True)
    assert tls.dicom_tls and tls.fhir_bearer_token == tls.stow_bearer_token == EXISTING_SECRET_VALUE
    assert tls.stow_tls_ca_file == Path("/var/run/secrets/radiomics-cds/stow-ca/ca.crt")
    assert tls.fhir_tls_ca_file == Path("/var/run/secrets/radiomics-cds/fhir-ca/ca.crt")
    assert tls.prior_dicomweb_basic_auth == EXISTING_SECRET_VALUE
    assert tls.prior_dicomweb_tls_ca_file == Path("/var/run/secrets/radiomics-cds/prior-dicomweb-ca/ca.crt")
    # Priors over DIMSE from the PACS: the ingest asks pacs_host; the scorer, which looks nothing
    # up, gets no prior settings (with prior_providers and without pacs_host it would not start).
    assert tls.prior_providers == ("dicomweb", "dimse") and tls.prior_dimse_peer[0] == "pacs.imaging.example"
    tls_scorer = _load(rendered["tls-secrets-monitoring"], rendered["tls-secrets-monitoring"].deployment, tmp_path)
    assert tls_scorer.prior_providers == () and tls_scorer.pacs_host is None
    smart = _load(rendered["fhir-smart"], rendered["fhir-smart"].statefulset, tmp_path)
    assert [rule[0] for rule in smart.location_rules.name_rules] == ["node|ln_", "liver|hep", "lung|pulm", ".*"]  # in order
    assert smart.fhir_smart_private_key_file == Path("/var/run/secrets/radiomics-cds/fhir-smart/smart-private-key.pem")
    assert (smart.fhir_smart_client_id, smart.quiet_seconds, smart.feature_panel) == ("radiomics-cds", 45.0, "full")
    assert smart.fhir_bearer_token is None and smart.stow_bearer_token is None
    assert smart.stow_basic_auth == "rcds:ci-placeholder-stow-password"
    assert smart.prior_dicomweb_bearer_token == "ci-placeholder-prior-token" and smart.fhir_result_status == "final"
    smart_scorer = _load(rendered["fhir-smart"], rendered["fhir-smart"].deployment, tmp_path)
    assert not smart.scorer_tls and smart_scorer.scorer_tls_cert_file is None  # plaintext gRPC by default
    assert (tls.scorer_tls, tls.scorer_tls_server_name, tls.scorer_tls_client_cert_file) == (True, "scorer.rcds.internal", None)
    hardened = rendered["hardened"]
    ingest, scorer = _load(hardened, hardened.statefulset, tmp_path), _load(hardened, hardened.deployment, tmp_path)
    assert ingest.scorer_tls and ingest.scorer_tls_client_key_file and ingest.scorer_tls_server_name is None
    assert scorer.scorer_tls_client_ca_file and not scorer.scorer_tls and not scorer.scorer_reflection


def test_spool_retention_reaches_the_ingest_at_the_charts_default_or_the_sites(
        chart: Any, rendered: dict[str, Rendered], tmp_path: Path) -> None:
    """The chart removes a study's spooled instances 7 days after it is done (delivered and
    reconciled) unless the site says otherwise, 0 (keep for ever) included; the scorer, which
    has no spool, is not given the setting."""
    default = rendered["default"]
    assert _load(default, default.statefulset, tmp_path).spool_retention_days == 7.0
    scorer_yaml = yaml.safe_load(default.get("ConfigMap", FULLNAME)["data"]["scorer.yaml"])
    assert "spool_retention_days" not in scorer_yaml and _load(default, default.deployment, tmp_path).spool_retention_days == 0
    for days in (0, 30):
        site = _render(chart, _allowing({"config": {"spool_retention_days": days}}), f"retention-{days}")
        assert _load(site, site.statefulset, tmp_path).spool_retention_days == days


def test_a_signature_and_parameter_file_given_to_the_chart_start_the_scorer(chart: Any, tmp_path: Path) -> None:
    """--set-file signature=... / extractionSettings=...: the scorer role loads both and checks
    that the signature accepts the settings, as it does at start."""
    values = {"signature": (REPO / "service" / "signatures" / "cd8-sun2018.json").read_text(),
              "extractionSettings": (REPO / "examples" / "parameters" / "cd8-sun2018.yaml").read_text()}
    case = _render(chart, _allowing(values))
    config = _load(case, case.deployment, tmp_path)
    assert config.signature_file == tmp_path / "inline" / "Deployment" / "signature.json"
    assert config.extraction_settings_file == tmp_path / "inline" / "Deployment" / "extraction-settings.yaml"
    context = scoring_context(config)
    assert context.signature.id == json.loads(values["signature"])["id"]


def test_every_rcds_variable_names_a_setting(case: Rendered) -> None:
    """load_config ignores an unknown RCDS_* variable: a typo here would go unnoticed."""
    settings = {f"RCDS_{field.name.upper()}" for field in dataclasses.fields(Config)} | {"RCDS_CONFIG"}
    for workload in case.workloads():
        unknown = {name for name in _env(_container(workload)) if name.startswith("RCDS_")} - settings
        assert unknown == set(), workload["metadata"]["name"]


def test_no_secret_value_reaches_the_config_map_or_a_plain_variable(chart: Any, rendered: dict[str, Rendered]) -> None:
    token_case = _render(chart, _allowing({"config": {"fhir_base_url": "https://ehr.example/fhir"},
                                           "fhir": {"bearerToken": {"value": "ci-placeholder-bearer-token"}}}))
    assert "RCDS_FHIR_BEARER_TOKEN_FILE" in _env(_container(token_case.statefulset))
    cases = [*rendered.values(), token_case]
    secrets = [(case, base64.b64decode(value).decode()) for case in cases
               for secret in case.all("Secret") for value in secret["data"].values()]
    assert len(secrets) >= 4, "the cases must include chart-made Secrets"
    for case, value in secrets:
        assert value.strip()
        config_map = json.dumps(case.get("ConfigMap", FULLNAME))
        plain = [item.get("value", "") for w in case.workloads() for item in _container(w).get("env", [])]
        assert value.strip() not in config_map and value.strip() not in plain, case.case


# --- hardening ------------------------------------------------------------------------------

def test_every_container_runs_unprivileged_on_a_read_only_root(case: Rendered) -> None:
    for workload in case.workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["runAsNonRoot"] is True and context["capabilities"] == {"drop": ["ALL"]}
            mount, volume = _mount_of(workload, "/tmp/dataset.dcm")
            assert mount["mountPath"] == "/tmp" and "emptyDir" in volume
            assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    account = case.find("ServiceAccount", FULLNAME)
    assert account is None or account["automountServiceAccountToken"] is False


def test_image_is_pinned(rendered: dict[str, Rendered]) -> None:
    assert _container(rendered["default"].statefulset)["image"] == "radiomics-cds:0.1.0"
    hardened = _values("hardened")["image"]
    for workload in rendered["hardened"].workloads():
        assert _container(workload)["image"] == f"{hardened['repository']}:{hardened['tag']}@{hardened['digest']}"


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule.get("from") or rule.get("to") or []


def test_network_policies_admit_only_the_configured_peers(rendered: dict[str, Rendered]) -> None:
    default = rendered["default"]
    ingest = default.get("NetworkPolicy", f"{FULLNAME}-ingest")["spec"]
    assert _matches(ingest["podSelector"]["matchLabels"], _pod_labels(default.statefulset))
    assert all(port["port"] != "dicom" for rule in ingest["ingress"] for port in rule["ports"])  # nobody yet
    scorer_egress = next(rule for rule in ingest["egress"] if rule["ports"] == [{"port": 50051, "protocol": "TCP"}])
    assert _matches(_peers(scorer_egress)[0]["podSelector"]["matchLabels"], _pod_labels(default.deployment))
    scorer = default.get("NetworkPolicy", f"{FULLNAME}-scorer")["spec"]
    grpc_rule = next(rule for rule in scorer["ingress"] if rule["ports"][0]["port"] == "grpc")
    (peer,) = _peers(grpc_rule)
    assert set(peer) == {"podSelector"} and _matches(peer["podSelector"]["matchLabels"], _pod_labels(default.statefulset))
    assert not _matches(peer["podSelector"]["matchLabels"], _pod_labels(default.deployment))
    assert scorer["egress"] == [] and "Egress" in scorer["policyTypes"]

    tls = rendered["tls-secrets-monitoring"].get("NetworkPolicy", f"{FULLNAME}-ingest")["spec"]
    dicom_rule = next(rule for rule in tls["ingress"] if rule["ports"][0]["port"] == "dicom")
    assert _peers(dicom_rule) == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    pacs_rule = next(rule for rule in tls["egress"] if rule["ports"] == [{"port": 2762, "protocol": "TCP"}])
    assert _peers(pacs_rule) == [{"ipBlock": {"cidr": "10.20.5.10/32"}}]
    stow_rule = next(rule for rule in tls["egress"] if rule["ports"] == [{"port": 443, "protocol": "TCP"},
                                                                          {"port": 8443, "protocol": "TCP"}])
    assert _peers(stow_rule) == [{"ipBlock": {"cidr": "10.20.6.0/24"}}]
    prior_rule = next(rule for rule in tls["egress"] if rule["ports"] == [{"port": 443, "protocol": "TCP"},
                                                                           {"port": 8042, "protocol": "TCP"}])
    assert _peers(prior_rule) == [{"ipBlock": {"cidr": "10.20.7.0/24"}}]
    hardened = rendered["hardened"].get("NetworkPolicy", f"{FULLNAME}-ingest")["spec"]
    (only_rule,) = hardened["ingress"]  # DICOM from the PACS namespace, no scraping
    assert only_rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["pacs"]


STOW_BLOCKED = ("WARNING: stow_url is set but networkPolicy.stowCidrs is empty: the NetworkPolicy blocks the ingest's "
                "egress to the STOW-RS archive, so every STOW-RS delivery (SR and page) fails and is given up after "
                "delivery_max_attempts. Set stowCidrs (and stowPorts) to the archive's addresses.")
PRIORS_BLOCKED = ("WARNING: networkPolicy.priorCidrs is empty: the NetworkPolicy blocks the ingest's egress to the "
                  "prior sources other than the PACS on pacs_port, so lookups there fail (outputs say \"priors "
                  "unavailable\") and reconciliation waits. Set priorCidrs (and priorPorts) to the addresses of: ")


def _notes(case: Rendered) -> str:
    """NOTES.txt with its lines joined as one text (a warning is wrapped over several)."""
    return " ".join(case.manifests["radiomics-cds/templates/NOTES.txt"].split())


def test_notes_warn_when_the_network_policy_blocks_stow_or_prior_lookups(chart: Any,
                                                                        rendered: dict[str, Rendered]) -> None:
    """STOW-RS or priors other than the PACS on pacs_port configured with no egress rule for
    them (an empty list renders none, and the policy denies the rest): fhir-smart has both; the
    TLS case sets both CIDR lists; DIMSE priors from the PACS need only pacsCidrs; without the
    NetworkPolicy nothing is blocked."""
    assert STOW_BLOCKED in _notes(rendered["fhir-smart"])
    assert PRIORS_BLOCKED + "prior_dicomweb_url." in _notes(rendered["fhir-smart"])
    for quiet in ("tls-secrets-monitoring", "default"):
        assert "stowCidrs" not in _notes(rendered[quiet]) and "priorCidrs" not in _notes(rendered[quiet])
    dimse = {"config": {"pacs_host": "pacs.example", "prior_providers": ["dimse"]},
             "networkPolicy": {"pacsCidrs": ["10.20.5.10/32"]}}
    assert "priorCidrs" not in _notes(_render(chart, _allowing(dimse)))
    elsewhere = _render(chart, _allowing(_merged(dimse, {"config": {
        "prior_providers": ["dicomweb", "dimse"], "prior_dicomweb_url": "https://pacs.example/dicom-web",
        "prior_dimse_port": 11112}})))
    assert PRIORS_BLOCKED + "prior_dicomweb_url, prior_dimse_host/prior_dimse_port." in _notes(elsewhere)
    blocked = {"config": {"stow_url": "https://archive.example/dicom-web", "prior_providers": ["dicomweb"],
                          "prior_dicomweb_url": "https://pacs.example/dicom-web"}}
    assert STOW_BLOCKED in _notes(_render(chart, _allowing(blocked)))
    no_policy = _render(chart, _allowing(_merged(blocked, {"networkPolicy": {"enabled": False}})))
    assert "stowCidrs" not in _notes(no_policy) and "priorCidrs" not in _notes(no_policy)


def test_scorer_autoscaling_and_disruption_budgets(rendered: dict[str, Rendered]) -> None:
    tls = rendered["tls-secrets-monitoring"]
    hpa = tls.get("HorizontalPodAutoscaler", f"{FULLNAME}-scorer")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": tls.deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert "replicas" not in tls.deployment["spec"]  # the HPA owns the count
    hardened = rendered["hardened"]
    assert hardened.all("HorizontalPodAutoscaler") == [] and hardened.deployment["spec"]["replicas"] == 3
    for case in rendered.values():
        budgets = case.all("PodDisruptionBudget")
        for workload in case.workloads():
            (budget,) = [b for b in budgets if _matches(b["spec"]["selector"]["matchLabels"], _pod_labels(workload))]
            assert budget["spec"]["maxUnavailable"] == 1


def test_extension_points_reach_the_pods(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    case = rendered["extensions"]
    values = _values("extensions")
    for workload in case.workloads():
        assert _container(workload)["image"].startswith("registry.example:5000/imaging/radiomics-cds:")
        labels = _pod_labels(workload)
        assert labels["team"] == "imaging" and _matches(workload["spec"]["selector"]["matchLabels"], labels)
    ingest, scorer = case.statefulset["spec"]["template"]["spec"], case.deployment["spec"]["template"]["spec"]
    assert ingest["priorityClassName"] == "clinical-high" and scorer["priorityClassName"] == "clinical-standard"
    assert ingest["topologySpreadConstraints"] == values["ingest"]["topologySpreadConstraints"]
    assert "topologySpreadConstraints" not in scorer
    assert _env(_container(case.statefulset))["HTTPS_PROXY"] == {"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}
    _, volume = _mount_of(case.statefulset, "/etc/site-ca/ca-bundle.pem")
    assert volume == {"name": "site-ca", "configMap": {"name": "site-ca-bundle"}}
    # extra RCDS_* variables are settings the service reads
    assert _load(case, case.statefulset, tmp_path).log_format == "json"
    assert _load(case, case.deployment, tmp_path).log_level == "WARNING"
    default = rendered["default"]
    for workload in default.workloads():
        assert _container(workload)["image"].startswith("radiomics-cds:")
        assert "priorityClassName" not in workload["spec"]["template"]["spec"]


# --- validators -----------------------------------------------------------------------------

def test_service_monitor_scrapes_both_roles(rendered: dict[str, Rendered]) -> None:
    """kubernetes-validate has no schema for CRDs: the ServiceMonitor is checked here instead,
    for what makes it scrape anything: its Services and their port."""
    assert rendered["default"].all("ServiceMonitor") == []
    case = rendered["tls-secrets-monitoring"]
    (monitor,) = case.all("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    scraped = [s for s in case.all("Service") if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    workloads = {w["metadata"]["name"]: w for w in case.workloads()}
    assert sorted(s["metadata"]["name"] for s in scraped) == [f"{FULLNAME}-ingest-headless", f"{FULLNAME}-scorer-headless"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    for service in scraped:
        port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
        (workload,) = [w for w in workloads.values() if _matches(service["spec"]["selector"], _pod_labels(w))]
        assert {p["name"]: p["containerPort"] for p in _container(workload)["ports"]}[port["targetPort"]] == 8080


def test_prometheus_rule_holds_the_rules_of_deploy_prometheus(chart: Any, rendered: dict[str, Rendered]) -> None:
    """Off by default; when on, exactly the rule groups promtool tests (tests/deploy/
    test_prometheus_rules.py), alert templates left for Prometheus, labels for the operator, and
    each runbook_url (the runbook's path in the repository) prefixed with runbookBaseUrl when
    set (a trailing slash or not), left as it is when not."""
    assert rendered["default"].all("PrometheusRule") == []
    (rule,) = rendered["tls-secrets-monitoring"].all("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    shipped = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yaml").read_text())
    (group,) = copy.deepcopy(shipped["groups"])
    for alert in group["rules"]:
        alert["annotations"]["runbook_url"] = ("https://git.imaging.example/radiomics-cds/blob/v0.1.0/docs/runbook.md#"
                                               + alert["alert"].lower())
    assert rule["spec"] == {"groups": [group]}
    assert "{{ $labels.instance }}" in rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]
    (unprefixed,) = _render(chart, _allowing({"prometheusRule": {"enabled": True}})).all("PrometheusRule")
    assert unprefixed["spec"] == {"groups": shipped["groups"]}
    assert shipped["groups"][0]["rules"][0]["annotations"]["runbook_url"] == "docs/runbook.md#radiomicscdsstudyfailed"


def test_grafana_dashboard_config_map_holds_the_charts_dashboard_file(rendered: dict[str, Rendered]) -> None:
    """Off by default; when on, the dashboard tests/deploy/test_grafana_dashboard.py checks, under
    the label Grafana's sidecar looks for, with the annotations given."""
    assert rendered["default"].find("ConfigMap", f"{FULLNAME}-dashboard") is None
    dashboard = rendered["tls-secrets-monitoring"].get("ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Imaging"}
    shipped = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["radiomics-cds.json"]) == shipped


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_objects_are_valid_kubernetes(case: Rendered, kube_version: str) -> None:
    require_package("kubernetes_validate", "pip install kubernetes-validate==1.37.0")
    import kubernetes_validate

    for obj in case.objects:
        if obj["kind"] in ("ServiceMonitor", "PrometheusRule"):  # CRDs: see their own tests above
            continue
        kubernetes_validate.validate(obj, kube_version, strict=True)


def _checkov() -> str:
    require_external("checkov")
    candidates = [os.environ.get("RCDS_CHECKOV"), str(REPO / ".venv-tools" / "bin" / "checkov"), shutil.which("checkov")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing_dependency("checkov is not installed (scripts/install-deploy-tools, or set RCDS_CHECKOV)")


# The only skips: an image pinned by tag but not by digest (CKV_K8S_43, and CKV_K8S_15 for
# IfNotPresent). Credentials are mounted files, never variables (no CKV_K8S_35). The hardened
# case has none.
EXPECTED_SKIPS = {
    "default": {("StatefulSet", "CKV_K8S_43"), ("StatefulSet", "CKV_K8S_15"),
                ("Deployment", "CKV_K8S_43"), ("Deployment", "CKV_K8S_15")},
    "tls-secrets-monitoring": {("StatefulSet", "CKV_K8S_43"), ("StatefulSet", "CKV_K8S_15"),
                               ("Deployment", "CKV_K8S_43"), ("Deployment", "CKV_K8S_15")},
    "fhir-smart": {("StatefulSet", "CKV_K8S_43"), ("StatefulSet", "CKV_K8S_15"),
                   ("Deployment", "CKV_K8S_43"), ("Deployment", "CKV_K8S_15")},
    "hardened": set(),
    "extensions": {("StatefulSet", "CKV_K8S_43"), ("StatefulSet", "CKV_K8S_15"),
                   ("Deployment", "CKV_K8S_43"), ("Deployment", "CKV_K8S_15")},
}


def test_checkov_finds_nothing_beyond_the_stated_skips(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    for case in rendered.values():
        folder = tmp_path / case.case
        folder.mkdir()
        for name, text in case.manifests.items():
            if name.endswith(".yaml") and text.strip():
                (folder / PurePosixPath(name).name).write_text(text)
    result = subprocess.run([_checkov(), "--framework", "kubernetes", "--skip-download", "--output", "json",
                             "--directory", str(tmp_path)], capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and result.returncode == 0
    assert report["summary"]["passed"] > 500 and report["summary"]["parsing_errors"] == 0
    skipped: dict[str, set[tuple[str, str]]] = {case: set() for case in rendered}
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"]["suppress_comment"]) > 20, check["check_id"]  # a reason, not a bare id
        skipped[PurePosixPath(check["file_path"]).parts[1]].add((check["resource"].split(".")[0], check["check_id"]))
    assert skipped == EXPECTED_SKIPS
