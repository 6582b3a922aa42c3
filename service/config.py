"""One settings object: embedded defaults, then an optional YAML file, then RCDS_* environment.

Every field can be set as `RCDS_<FIELD NAME IN CAPITALS>` (e.g. RCDS_DICOM_PORT=11113) or as
`field_name: value` in the YAML file given by --config or RCDS_CONFIG. Values are validated at
start, so a typo stops the service with a message instead of surfacing at the first study.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from service.dicom_limits import InstanceLimits
from service.errors import ConfigError
from service.location import DEFAULT_NAME_RULES, LocationRules
from service.model import LocationClass
from service.scorer import DEFAULT_MAX_MESSAGE_BYTES
from service.secret_file import Credential, SecretFile, read_secret

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # default character repertoire, no backslash


def _roi_types(items: list[Any]) -> tuple[str, ...]:
    """RT ROI Interpreted Types are defined terms in capitals; "" stands for "no type given"."""
    return tuple(str(item).strip().upper() for item in items)


def _ae_titles(items: list[Any]) -> tuple[str, ...]:
    """AE titles are case-sensitive: kept as written, without surrounding spaces and empty items."""
    titles = []
    for item in items:
        if not isinstance(item, str):  # YAML turns NO into False and 0123 into 83
            raise ValueError(f"{item!r} is not text (quote AE titles in YAML)")
        if item.strip():
            titles.append(item.strip())
    return tuple(titles)


PRIOR_PROVIDERS = ("dicomweb", "dimse", "directory")
RETRIEVING_PRIOR_PROVIDERS = ("dicomweb", "dimse")  # those that retrieve images too (service.priors.retrieve)
FHIR_RESULT_STATUSES = ("preliminary", "final")
"""DiagnosticReport and Observation status codes (FHIR R4) a site may choose: unverified results
are `preliminary`; `final` claims a verification the service cannot make (docs/fhir.md)."""
# The longest wait before PACS is asked again about a study after it did not answer (the
# worker's reconciliation and prior retry double pacs_query_initial_backoff_seconds up to it), so
# that a PACS refusing our credentials for days is not asked (nor logged) once a minute per study.
PACS_QUERY_MAX_BACKOFF_SECONDS = 3600.0


def _prior_providers(items: list[Any]) -> tuple[str, ...]:
    """Provider names in lower case, in the order they are tried; an unknown one stops the start."""
    names = tuple(str(item).strip().lower() for item in items if str(item).strip())
    unknown = sorted(set(names) - set(PRIOR_PROVIDERS))
    if unknown:
        raise ValueError(f"unknown prior providers {unknown}; use {list(PRIOR_PROVIDERS)}")
    return names


# Credentials read from a file: <setting>_file -> <setting>. Read and checked at start into the
# setting (Config._read_secret_files), so a deployment whose file gives none stops there; then
# followed: their consumers take them through Config.credential, which reads the file again when
# it changes (service.secret_file: a rotated Kubernetes Secret applies without a restart).
SECRET_FILES = {"fhir_bearer_token_file": "fhir_bearer_token", "stow_bearer_token_file": "stow_bearer_token",
                "stow_basic_auth_file": "stow_basic_auth",
                "prior_dicomweb_bearer_token_file": "prior_dicomweb_bearer_token",
                "prior_dicomweb_basic_auth_file": "prior_dicomweb_basic_auth"}


@dataclass(frozen=True)
class Config:
    # DICOM listener (Storage SCP)
    dicom_ae_title: str = "RADIOMICS_CDS"
    dicom_host: str = "0.0.0.0"
    dicom_port: int = 11112
    dicom_max_associations: int = 10
    # Calling AE titles allowed to associate (case-sensitive); empty: any
    dicom_allowed_calling_aes: tuple[str, ...] = field(default=(), metadata={"items": _ae_titles})
    # DICOM TLS: certificate + key (PEM) turn TLS on; a CA file makes client certificates mandatory
    dicom_tls_cert_file: Path | None = None
    dicom_tls_key_file: Path | None = None
    dicom_tls_ca_file: Path | None = None
    # The largest instance accepted (listener and imaging); defaults and why: service/dicom_limits.py
    max_frames_per_instance: int = InstanceLimits.max_frames_per_instance
    max_rows: int = InstanceLimits.max_rows
    max_columns: int = InstanceLimits.max_columns
    max_rois_per_structure_set: int = InstanceLimits.max_rois_per_structure_set
    max_points_per_contour: int = InstanceLimits.max_points_per_contour
    max_contour_points: int = InstanceLimits.max_contour_points
    # Where everything durable lives: spool/, index.sqlite, outbox/
    var_dir: Path = Path("var")
    # Days a done or failed study's spooled instances are kept once nothing more happens to it
    # (and its deliveries and reconciliation are finished: service.retention); 0: for ever
    spool_retention_days: float = 0.0
    # Study completeness: quiet period, early completion, hard cap (seconds)
    quiet_seconds: float = 30.0
    hard_cap_seconds: float = 3600.0
    # Scoring core (gRPC)
    scorer_address: str = "127.0.0.1:50051"
    scorer_workers: int = 2
    # Studies scored at the same time (they share the scorer pool); more lesions than
    # max_lesions_per_study fail a study with that reason
    concurrent_studies: int = 2
    max_lesions_per_study: int = 100
    grpc_max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Scorer role: seconds calls in flight get to finish after SIGTERM
    scorer_grace_seconds: float = 30.0
    # Scorer role, gRPC TLS: certificate + key (PEM) turn TLS on; a client CA file makes client
    # certificates mandatory (mutual TLS)
    scorer_tls_cert_file: Path | None = None
    scorer_tls_key_file: Path | None = None
    scorer_tls_client_ca_file: Path | None = None
    # Scorer role: serve gRPC server reflection (lists the API to anyone who can connect)
    scorer_reflection: bool = False
    # Towards the scorer (ingest, serve): TLS, the scorer's certificate verified against the CA
    # file (else gRPC's built-in roots) and for the host of scorer_address (or the server name);
    # our client certificate + key when the scorer requires one
    scorer_tls: bool = False
    scorer_tls_ca_file: Path | None = None
    scorer_tls_client_cert_file: Path | None = None
    scorer_tls_client_key_file: Path | None = None
    scorer_tls_server_name: str | None = None
    signature_file: Path | None = None
    # pyradiomics parameter file (docs/features.md); unset: docs/method.md section 2's defaults
    extraction_settings_file: Path | None = None
    # Features computed per lesion: "signature" (only what the signature needs) or "full"
    feature_panel: str = "signature"
    volume_filter_ml: float = 1.0
    site_mapping: dict[str, str] = field(default_factory=dict)
    # ROI-name keyword rules (regular expression: location class), tried in order; empty: built-in
    location_name_rules: dict[str, str] = field(default_factory=dict)
    # RTSTRUCT ROIs scored as lesions, by RT ROI Interpreted Type ("" = no type given)
    lesion_roi_types: tuple[str, ...] = field(default=("GTV", ""), metadata={"items": _roi_types})
    # Logs: level (DEBUG shows UIDs; above it they are replaced by hashes) and format (text, json)
    log_level: str = "INFO"
    log_format: str = "text"
    # HTTP: /metrics, /healthz, /readyz
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    # serve: the HTTP port of its scorer child (/metrics, /healthz, /readyz; 0: any free port, logged)
    scorer_metrics_port: int = 8081
    # Outputs: written to var_dir/outbox always; delivered when a destination is set
    pacs_host: str | None = None
    pacs_port: int = 104
    pacs_ae_title: str = "PACS"
    # TLS towards the PACS: its certificate verified against the CA file (else the system's CAs)
    # and for pacs_host; our client certificate + key when the PACS requires one
    pacs_tls: bool = False
    pacs_tls_ca_file: Path | None = None
    pacs_tls_cert_file: Path | None = None
    pacs_tls_key_file: Path | None = None
    # DICOMweb STOW-RS of the SR (as well as, or instead of, C-STORE): the archive's DICOMweb base
    # URL (e.g. https://pacs.example/dicom-web); a bearer token (https only) and a CA file to
    # verify the archive's certificate against (else requests' CAs) when it needs them
    stow_url: str | None = None
    stow_bearer_token: str | None = field(default=None, repr=False)  # a credential: never in a repr
    # HTTP Basic, "user:password" (Orthanc), instead of the token
    stow_basic_auth: str | None = field(default=None, repr=False)  # a credential: never in a repr
    stow_tls_ca_file: Path | None = None
    # Priors: our earlier SRs of the patient, pulled from PACS (the source of truth) through these
    # sources in this order (dicomweb, dimse, directory); empty: no priors. The DIMSE peer defaults to
    # the PACS the SRs go to (pacs_host, pacs_port, pacs_ae_title; over TLS when pacs_tls is on);
    # directory reads our SRs under prior_directory (e.g. var_dir/outbox, on a single node).
    prior_providers: tuple[str, ...] = field(default=(), metadata={"items": _prior_providers})
    prior_lookback_days: int = 1095
    prior_max_studies: int = 12
    prior_timeout_seconds: float = 30.0
    # A study ready to score waits (at most this long after its last instance) while an earlier
    # study of the patient is still in flight on this ingest, so that it compares with its report.
    prior_in_flight_wait_seconds: float = 600.0
    # A study scored while no prior source answered is asked about again (reconciliation's
    # schedule: pacs_query_initial_backoff_seconds, doubled up to an hour) and scored again once
    # one answers, for at most this long after its first result without priors; 0: never
    # (`rescore --priors-unavailable`).
    prior_retry_hours: float = 72.0
    # A question about a study that could not be settled (reconciliation's: PACS did not answer,
    # a later study of the patient still in flight here, a retrieved study not stored; or a
    # study's priors after they were unavailable) is asked again after this long, then after
    # twice as long at each postponement of the same study, up to an hour.
    pacs_query_initial_backoff_seconds: float = 60.0
    prior_dicomweb_url: str | None = None
    # its credentials (a bearer token or HTTP Basic "user:password", https only) and CA file, as
    # for STOW-RS
    prior_dicomweb_bearer_token: str | None = field(default=None, repr=False)  # a credential: never in a repr
    prior_dicomweb_basic_auth: str | None = field(default=None, repr=False)  # a credential: never in a repr
    prior_dicomweb_tls_ca_file: Path | None = None
    prior_dimse_host: str | None = None
    prior_dimse_port: int | None = None
    prior_dimse_ae_title: str | None = None
    prior_directory: Path | None = None
    # Response assessment (RECIST 1.1, iRECIST, kinetics) time anchors: the treatment start
    # (YYYY-MM-DD), the baseline study, the tracking UIDs of irradiated lesions; unset: the
    # earliest study is the baseline ("baseline inferred") and kinetics are not computable
    treatment_start: str | None = None
    baseline_study_uid: str | None = None
    irradiated_lesions: tuple[str, ...] = ()
    # The response rules' settings (RECIST 1.1, iRECIST, kinetics; docs/method.md 5.3): a YAML file
    # with sections recist, irecist, kinetics (examples/response-settings.yaml), read and checked
    # once at start (service.longitudinal.settings_file); unset: the guideline defaults
    response_settings_file: Path | None = None
    fhir_base_url: str | None = None
    # EHR authorisation: a static bearer token, or SMART backend services (client id + private key;
    # the token endpoint from .well-known/smart-configuration unless set)
    fhir_bearer_token: str | None = field(default=None, repr=False)  # a credential: never in a repr
    fhir_smart_client_id: str | None = None
    fhir_smart_private_key_file: Path | None = None
    fhir_smart_key_id: str | None = None
    fhir_smart_token_url: str | None = None
    fhir_smart_scope: str = ("system/Observation.crus system/DiagnosticReport.crus system/Device.crus "
                             "system/Patient.rs")
    patient_identifier_system: str = "urn:dicom:patient-id"
    # The FHIR status of the DiagnosticReport and its Observations (FHIR_RESULT_STATUSES):
    # preliminary, because no one has verified them (the SR says UNVERIFIED); final for an EHR
    # that shows no preliminary results
    fhir_result_status: str = "preliminary"
    delivery_max_attempts: int = 10
    delivery_initial_backoff_seconds: float = 5.0
    # Credentials from files, the way container platforms hand out secrets (a Kubernetes Secret
    # mounted as a volume, a Docker secret): read at start, surrounding whitespace removed, into
    # the setting without _file (SECRET_FILES), and read again at use when the file has changed
    # (a rotated Secret); a setting and its file are not both set
    fhir_bearer_token_file: Path | None = None
    stow_bearer_token_file: Path | None = None
    stow_basic_auth_file: Path | None = None
    prior_dicomweb_bearer_token_file: Path | None = None
    prior_dicomweb_basic_auth_file: Path | None = None
    # The EHR's TLS: its certificate (FHIR server, SMART token endpoint) verified against this CA
    # bundle (PEM) instead of the system's CAs
    fhir_tls_ca_file: Path | None = None

    def __post_init__(self) -> None:
        self._read_secret_files()
        if not 1 <= len(self.dicom_ae_title.strip()) <= 16:
            raise ConfigError("dicom_ae_title must have 1 to 16 characters")
        for name in ("dicom_port", "http_port", "scorer_metrics_port"):  # ours to bind: 0 takes a free one
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be a TCP port (0-65535)")
        if self.dicom_max_associations < 1:
            raise ConfigError("dicom_max_associations must be at least 1")
        wrong_titles = [title for title in self.dicom_allowed_calling_aes if not _AE_TITLE.fullmatch(title)]
        if wrong_titles:
            raise ConfigError(f"dicom_allowed_calling_aes: {wrong_titles} are not AE titles "
                              "(1 to 16 characters, no backslash or control characters)")
        self._check_tls()
        self._check_no_credentials_in_urls()
        self._check_fhir_auth()
        self._check_stow()
        self._check_priors()
        if self.treatment_start is not None:
            try:
                datetime.date.fromisoformat(self.treatment_start)
            except ValueError:
                raise ConfigError(f"treatment_start must be a date (YYYY-MM-DD), not {self.treatment_start!r}") from None
        for name in (f.name for f in dataclasses.fields(InstanceLimits)):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.quiet_seconds <= 0 or self.hard_cap_seconds < self.quiet_seconds:
            raise ConfigError("quiet_seconds must be positive and hard_cap_seconds at least quiet_seconds")
        for name in ("concurrent_studies", "max_lesions_per_study", "scorer_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.delivery_max_attempts < 1:
            raise ConfigError("delivery_max_attempts must be at least 1")
        self._check_bounds()
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")
        if self.feature_panel not in ("signature", "full"):
            raise ConfigError("feature_panel must be 'signature' or 'full'")
        if self.fhir_result_status not in FHIR_RESULT_STATUSES:
            raise ConfigError(f"fhir_result_status must be one of {', '.join(FHIR_RESULT_STATUSES)}, "
                              f"not {self.fhir_result_status!r}")
        for setting in ("site_mapping", "location_name_rules"):
            known = [location.value for location in LocationClass]
            wrong = sorted(c for c in getattr(self, setting).values() if c not in known)
            if wrong:
                raise ConfigError(f"{setting}: unknown location classes {wrong}; use {known}")
        for pattern in self.location_name_rules:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"location_name_rules: {pattern!r} is not a regular expression ({error})") from error

    def _read_secret_files(self) -> None:
        """Each set *_file of SECRET_FILES read into its setting (the dataclass is frozen: set
        here, once, before anything reads it); ConfigError naming the setting otherwise."""
        for file_setting, setting in SECRET_FILES.items():
            path = getattr(self, file_setting)
            if path is None:
                continue
            secret = read_secret(Path(path), file_setting)
            if getattr(self, setting) not in (None, secret):  # equal: a copy (dataclasses.replace)
                raise ConfigError(f"set {setting} or {file_setting}, not both")
            object.__setattr__(self, setting, secret)

    def credential(self, setting: str) -> Credential | None:
        """A credential setting of SECRET_FILES as its consumer sends it: followed in its file
        when it came from one (read again when the file changes), else as given; None when unset."""
        value = getattr(self, setting)
        if not value:
            return None
        path = getattr(self, f"{setting}_file")
        return value if path is None else SecretFile(Path(path), f"{setting}_file", value)

    def _check_bounds(self) -> None:
        """The numbers the chart's schema bounds, bounded here too: a value given in the
        environment or a YAML file reaches no schema."""
        if not 1 <= self.pacs_port <= 65535:  # a peer's port: 0 names no port
            raise ConfigError("pacs_port must be a TCP port (1-65535)")
        if self.grpc_max_message_bytes < 1:
            raise ConfigError("grpc_max_message_bytes must be at least 1")
        if self.delivery_initial_backoff_seconds <= 0:
            raise ConfigError("delivery_initial_backoff_seconds must be positive")
        for name in ("scorer_grace_seconds", "volume_filter_ml", "spool_retention_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")

    def _check_priors(self) -> None:
        """Each configured prior provider needs its address; limits must allow at least one prior."""
        if "dicomweb" in self.prior_providers and not self.prior_dicomweb_url:
            raise ConfigError("prior_providers has dicomweb but prior_dicomweb_url is not set")
        self._check_dicomweb_access("prior_dicomweb", "prior_dicomweb_url", "the PACS's DICOMweb base URL",
                                    used="dicomweb" in self.prior_providers)
        if "dimse" in self.prior_providers and not self.prior_dimse_peer[0]:
            raise ConfigError("prior_providers has dimse but neither prior_dimse_host nor pacs_host is set")
        if "directory" in self.prior_providers and self.prior_directory is None:
            raise ConfigError("prior_providers has directory but prior_directory is not set")
        for name in ("prior_lookback_days", "prior_max_studies"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.prior_timeout_seconds <= 0:
            raise ConfigError("prior_timeout_seconds must be positive")
        for name in ("prior_in_flight_wait_seconds", "prior_retry_hours"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if not 0 < self.pacs_query_initial_backoff_seconds <= PACS_QUERY_MAX_BACKOFF_SECONDS:
            raise ConfigError(f"pacs_query_initial_backoff_seconds must be above 0 and at most "
                              f"{PACS_QUERY_MAX_BACKOFF_SECONDS:g} (the longest wait)")
        if self.prior_dimse_port is not None and not 1 <= self.prior_dimse_port <= 65535:  # a peer's, as pacs_port
            raise ConfigError("prior_dimse_port must be a TCP port (1-65535)")

    def _check_no_credentials_in_urls(self) -> None:
        """http://user:password@host/...: requests would send them (in clear over http), and the
        URL is in the chart's ConfigMap, error texts and the DICOMweb client's DEBUG log."""
        for name in ("stow_url", "prior_dicomweb_url", "fhir_base_url", "fhir_smart_token_url"):
            if (url := getattr(self, name)) and "@" in urllib.parse.urlsplit(url).netloc:
                raise ConfigError(f"{name} must not hold credentials (user:password@): set them in the "
                                  "matching *_basic_auth or *_bearer_token setting, from a file or Secret")

    def _check_stow(self) -> None:
        """An http(s) URL; its credentials and CA file only with it."""
        if self.stow_url and not re.match(r"https?://[^/\s]+", self.stow_url):
            raise ConfigError(f"stow_url must be an http:// or https:// URL (the DICOMweb base), not {self.stow_url!r}")
        self._check_dicomweb_access("stow", "stow_url", "the archive's DICOMweb base URL")

    def _check_dicomweb_access(self, prefix: str, url_setting: str, url_meaning: str, used: bool = True) -> None:
        """`<prefix>_bearer_token`, `_basic_auth` and `_tls_ca_file` only with the URL, and only
        when the source is `used` (else they would silently do nothing), one credential at most,
        Basic as user:password."""
        stray = [name for name in (f"{prefix}_bearer_token", f"{prefix}_basic_auth", f"{prefix}_tls_ca_file")
                 if getattr(self, name)]
        if stray and not getattr(self, url_setting):
            raise ConfigError(f"{', '.join(stray)} set but {url_setting} is not: set {url_meaning}")
        if getattr(self, f"{prefix}_bearer_token") and getattr(self, f"{prefix}_basic_auth"):
            raise ConfigError(f"set {prefix}_bearer_token or {prefix}_basic_auth, not both")
        if (basic := getattr(self, f"{prefix}_basic_auth")) is not None:
            user, colon, password = basic.partition(":")
            if not (colon and user and user == user.strip() and password):
                raise ConfigError(f"{prefix}_basic_auth must be user:password (the user without a colon or "
                                  "surrounding spaces)")
        if stray and not used:
            raise ConfigError(f"{', '.join(stray)} set but prior_providers has no dicomweb: they would not be used")

    def _check_fhir_auth(self) -> None:
        """Bearer token or SMART, not both; SMART needs its client id and key; either needs the EHR."""
        smart = [name for name in ("fhir_smart_client_id", "fhir_smart_private_key_file") if getattr(self, name)]
        if smart and len(smart) < 2:
            raise ConfigError("fhir_smart_client_id and fhir_smart_private_key_file go together: "
                              "set both for SMART backend services (or neither)")
        if smart and self.fhir_bearer_token:
            raise ConfigError("set fhir_bearer_token or SMART backend services (fhir_smart_*), not both")
        if (smart or self.fhir_bearer_token) and not self.fhir_base_url:
            raise ConfigError("FHIR credentials are set but fhir_base_url is not: set the EHR's FHIR base URL")
        if self.fhir_tls_ca_file is not None and not self.fhir_base_url:
            raise ConfigError("fhir_tls_ca_file set but fhir_base_url is not: set the EHR's FHIR base URL")

    def _check_tls(self) -> None:
        """Which TLS settings go together; the files themselves are loaded at start (service.tls)."""
        if (self.dicom_tls_cert_file is None) != (self.dicom_tls_key_file is None):
            raise ConfigError("dicom_tls_cert_file and dicom_tls_key_file go together: "
                              "set both (DICOM TLS on) or neither (plain DICOM)")
        if self.dicom_tls_ca_file is not None and self.dicom_tls_cert_file is None:
            raise ConfigError("dicom_tls_ca_file (client certificates required) needs DICOM TLS: "
                              "set dicom_tls_cert_file and dicom_tls_key_file too")
        if (self.pacs_tls_cert_file is None) != (self.pacs_tls_key_file is None):
            raise ConfigError("pacs_tls_cert_file and pacs_tls_key_file go together: set both or neither")
        stray = [name for name in ("pacs_tls_ca_file", "pacs_tls_cert_file", "pacs_tls_key_file")
                 if getattr(self, name) is not None]
        if stray and not self.pacs_tls:
            raise ConfigError(f"{', '.join(stray)} set but pacs_tls is off: set pacs_tls to true "
                              "(or remove them); SRs would go to the PACS unencrypted")
        self._check_scorer_tls()

    def _check_scorer_tls(self) -> None:
        """The scorer's side (server certificate, client CA) and the client's side (scorer_tls and
        its files) are checked apart: each role reads only its own."""
        if (self.scorer_tls_cert_file is None) != (self.scorer_tls_key_file is None):
            raise ConfigError("scorer_tls_cert_file and scorer_tls_key_file go together: "
                              "set both (gRPC TLS on the scorer) or neither (plaintext gRPC)")
        if self.scorer_tls_client_ca_file is not None and self.scorer_tls_cert_file is None:
            raise ConfigError("scorer_tls_client_ca_file (client certificates required) needs scorer TLS: "
                              "set scorer_tls_cert_file and scorer_tls_key_file too")
        if (self.scorer_tls_client_cert_file is None) != (self.scorer_tls_client_key_file is None):
            raise ConfigError("scorer_tls_client_cert_file and scorer_tls_client_key_file go together: "
                              "set both or neither")
        stray = [name for name in ("scorer_tls_ca_file", "scorer_tls_client_cert_file", "scorer_tls_client_key_file",
                                   "scorer_tls_server_name") if getattr(self, name) is not None]
        if stray and not self.scorer_tls:
            raise ConfigError(f"{', '.join(stray)} set but scorer_tls is off: set scorer_tls to true "
                              "(or remove them); lesion crops would go to the scorer unencrypted")

    @property
    def dicom_tls(self) -> bool:
        """The listener speaks TLS (certificate and key set)."""
        return self.dicom_tls_cert_file is not None

    @property
    def instance_limits(self) -> InstanceLimits:
        """The max_* settings, as the listener and the imaging readers take them."""
        return InstanceLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(InstanceLimits)})

    @property
    def location_rules(self) -> LocationRules:
        """The location rules in force: the site mapping, and the configured ROI-name rules, else
        the built-in ones (the values were checked to be location classes)."""
        name_rules = tuple((pattern, LocationClass(c)) for pattern, c in self.location_name_rules.items())
        return LocationRules(site_mapping={name: LocationClass(c) for name, c in self.site_mapping.items()},
                             name_rules=name_rules or DEFAULT_NAME_RULES)

    @property
    def prior_sources_retrieve(self) -> bool:
        """Whether a configured prior source can retrieve images too (WADO-RS, C-GET): what the
        worker needs to put back from PACS a study's instances gone from the spool
        (service.restoration), and `rescore` to know that it will."""
        return any(name in RETRIEVING_PRIOR_PROVIDERS for name in self.prior_providers)

    @property
    def prior_dimse_peer(self) -> tuple[str | None, int, str]:
        """(host, port, called AE title) of the DIMSE prior source: the prior_dimse_* settings,
        each defaulting to the PACS the SRs are sent to, where the SRs are."""
        return (self.prior_dimse_host or self.pacs_host,
                self.pacs_port if self.prior_dimse_port is None else self.prior_dimse_port,
                self.prior_dimse_ae_title or self.pacs_ae_title)

    @property
    def prior_cache_dir(self) -> Path:
        """Prior SRs fetched from PACS, by SOP Instance UID (service.priors.cache)."""
        return self.var_dir / "priors"

    @property
    def spool_dir(self) -> Path:
        return self.var_dir / "spool"

    @property
    def receive_dir(self) -> Path:
        """Instances being received (service.ingest.receive): on the spool's volume."""
        return self.var_dir / "receiving"

    @property
    def index_path(self) -> Path:
        return self.var_dir / "index.sqlite"

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @property
    def outbox_database(self) -> Path:
        """The outbox's delivery rows (service.outputs.outbox)."""
        return self.var_dir / "outbox.sqlite"


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(name: str, kind: Any, value: Any, items: Callable[[list[Any]], tuple[str, ...]] | None = None) -> Any:
    """Turn a YAML or environment value into the field's type, or say which field is wrong.

    Tuple fields are comma-separated text or YAML lists; `items` (the field's metadata) turns
    the items into the field's values, else they are stripped text.
    """
    text_kind = str(kind)
    if value is None and "tuple" in text_kind:  # an empty YAML entry: an empty list
        value = []
    try:
        if value is None or (isinstance(value, str) and value == "" and "None" in text_kind):
            return None
        if "dict" in text_kind:
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(parsed, Mapping):
                raise ValueError("expected a mapping")
            return {str(k): str(v) for k, v in parsed.items()}
        if "tuple" in text_kind:
            parts = value.split(",") if isinstance(value, str) else value
            if not isinstance(parts, (list, tuple)):
                raise ValueError("expected comma-separated text or a list")
            return items(list(parts)) if items else tuple(str(part).strip() for part in parts)
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError("expected true or false")
        if "Path" in text_kind:
            return Path(value)
        if kind is int or text_kind == "int | None":
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"setting {name}: cannot use {value!r} ({error})") from error


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Defaults < YAML file < RCDS_* environment < explicit overrides (e.g. CLI flags)."""
    environ = os.environ if environ is None else environ
    hints = get_type_hints(Config)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    names = set(fields)
    values: dict[str, Any] = {}
    path = path or (Path(environ["RCDS_CONFIG"]) if environ.get("RCDS_CONFIG") else None)
    if path is not None:
        try:
            document = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read configuration file {path}: {error}") from error
        if not isinstance(document, Mapping):
            raise ConfigError(f"configuration file {path} must be a mapping of setting: value")
        unknown = sorted(set(document) - names)
        if unknown:
            raise ConfigError(f"configuration file {path}: unknown settings {unknown}")
        values.update(document)
    for name in names:
        env_value = environ.get(f"RCDS_{name.upper()}")
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**{name: _coerce(name, hints[name], value, fields[name].metadata.get("items"))
                     for name, value in values.items()})
