"""Priors from a real PACS: Orthanc with its DICOMweb plugin, from the reference configuration.

Our SRs, built with the real SR builder for synthetic studies of synthetic patients (another
Study Instance UID, date and patient per case), are uploaded to one Orthanc; the DICOMweb
(QIDO-RS + WADO-RS) and DIMSE (C-FIND + C-GET) sources then resolve the priors of a "current"
study. Each case has its own patient, so the cases share the Orthanc without seeing each other.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from service.config import Config, load_config
from service.model import StudyInfo
from service.outputs.dicomweb_access import DicomwebAccess
from service.priors import PriorCache, PriorProvider, SrLocation, resolve_priors
from service.priors.dicomweb import DicomwebProvider
from service.priors.dimse import DimseProvider
from service.priors.providers import build_providers
from tests.support.certs import make_authority
from tests.support.orthanc import Orthanc, find_orthanc
from tests.support.prior_srs import our_sr, synthetic_study
from tests.support.processes import free_port
from tests.support.secret_volume import SecretVolume
from tests.support.tls_proxy import TlsProxy
from tests.support.written_outputs import write_sr

pytestmark = pytest.mark.external
OUR_AE = Config().dicom_ae_title
TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    find_orthanc()
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc-priors"), modality_port=free_port())
    yield pacs
    pacs.stop()


def _provider(orthanc: Orthanc, name: str) -> PriorProvider:
    if name == "dicomweb":
        return DicomwebProvider(DicomwebAccess(orthanc.dicomweb_url), TIMEOUT_S)
    return DimseProvider("127.0.0.1", orthanc.dicom_port, orthanc.aet, OUR_AE, TIMEOUT_S)


def _upload_sr(orthanc: Orthanc, tmp_path: Path, study: StudyInfo, *, version: str = "0.1.0",
               predecessor: Dataset | None = None) -> Dataset:
    """Our SR of `study` (tests.support.prior_srs) in Orthanc; returns it as sent."""
    path = write_sr(our_sr(study, version=version, predecessor=predecessor), tmp_path / "sent")
    orthanc.upload(path)
    return pydicom.dcmread(path)


def _resolve(orthanc: Orthanc, provider: str, study: StudyInfo, cache_dir: Path, **limits: int):
    settings = {"lookback_days": 1095, "max_studies": 12, **limits}
    return resolve_priors(study, [_provider(orthanc, provider)], PriorCache(cache_dir), **settings)


def test_dicomweb_and_dimse_find_the_same_priors(orthanc, tmp_path):
    baseline = _upload_sr(orthanc, tmp_path, synthetic_study("PRIOR-SAME", "20240110"))
    follow_up = _upload_sr(orthanc, tmp_path, synthetic_study("PRIOR-SAME", "20240320"))
    current = synthetic_study("PRIOR-SAME", "20240601")
    _upload_sr(orthanc, tmp_path, current)  # the current study's own SR: never its own prior
    _upload_sr(orthanc, tmp_path, synthetic_study("PRIOR-SAME", "20240701"))  # later: not a prior
    _upload_sr(orthanc, tmp_path, synthetic_study("PRIOR-OTHER", "20240201"))  # another patient

    by_web = _resolve(orthanc, "dicomweb", current, tmp_path / "web-cache")
    by_dimse = _resolve(orthanc, "dimse", current, tmp_path / "dimse-cache")

    assert by_web.unavailable is None and by_dimse.unavailable is None, (by_web, by_dimse)
    assert (by_web.source, by_dimse.source) == ("dicomweb", "dimse")
    assert [r.sop_instance_uid for r in by_web.reports] == [baseline.SOPInstanceUID, follow_up.SOPInstanceUID]
    assert by_web.reports == by_dimse.reports and by_web.notes == by_dimse.notes == ()
    first = by_web.reports[0]
    assert (first.study_instance_uid, first.study_date) == (baseline.StudyInstanceUID, "20240110")
    assert first.frame_of_reference_uid and len(first.lesions) == 2
    lesion = first.lesions[1]
    assert (lesion.volume_ml, lesion.longest_axial_mm, lesion.short_axis_mm, lesion.score) == (5.2, 24.6, 17.9, 1.42)
    assert lesion.centroid_mm == (-20.0, 20.0, -198.0) and lesion.tracking_uid and lesion.features


@pytest.mark.parametrize("provider", ["dicomweb", "dimse"])
def test_a_superseded_sr_is_dropped_for_the_one_that_replaces_it(orthanc, tmp_path, provider):
    patient = f"PRIOR-SUPERSEDED-{provider}"
    first = _upload_sr(orthanc, tmp_path, synthetic_study(patient, "20240110"))
    second = _upload_sr(orthanc, tmp_path, synthetic_study(patient, "20240110"), version="0.2.0", predecessor=first)
    assert first.SOPInstanceUID != second.SOPInstanceUID

    outcome = _resolve(orthanc, provider, synthetic_study(patient, "20240601"), tmp_path / "cache")

    assert [r.sop_instance_uid for r in outcome.reports] == [second.SOPInstanceUID], outcome
    assert outcome.reports[0].algorithm_version == "0.2.0"


@pytest.mark.parametrize("provider", ["dicomweb", "dimse"])
def test_a_prior_of_another_identity_is_ignored_and_the_outputs_say_so(orthanc, tmp_path, provider):
    patient = f"PRIOR-IDENTITY-{provider}"
    kept = _upload_sr(orthanc, tmp_path, synthetic_study(patient, "20240110"))
    _upload_sr(orthanc, tmp_path, synthetic_study(patient, "20240220", birth_date="19710505"))
    _upload_sr(orthanc, tmp_path, synthetic_study(patient, "20240301", sex="M"))

    outcome = _resolve(orthanc, provider, synthetic_study(patient, "20240601"), tmp_path / "cache")

    assert [r.sop_instance_uid for r in outcome.reports] == [kept.SOPInstanceUID]
    assert outcome.notes == ("prior SR ignored: patient birth date differs", "prior SR ignored: patient sex differs")
    assert "19710505" not in " ".join(outcome.output_notes)


@pytest.mark.parametrize("provider", ["dicomweb", "dimse"])
def test_lookback_and_count_limit_the_priors_to_the_latest_studies_in_the_window(orthanc, tmp_path, provider):
    patient = f"PRIOR-LIMITS-{provider}"
    for date in ("20200101", "20230101", "20230601"):  # 20200101: more than 1095 days before
        _upload_sr(orthanc, tmp_path, synthetic_study(patient, date))
    same_day_earlier = _upload_sr(orthanc, tmp_path, synthetic_study(patient, "20240601", time="080000"))
    current = synthetic_study(patient, "20240601", time="120000")

    outcome = _resolve(orthanc, provider, current, tmp_path / "cache", max_studies=2)
    assert [r.study_date for r in outcome.reports] == ["20230601", "20240601"]
    assert outcome.reports[-1].sop_instance_uid == same_day_earlier.SOPInstanceUID

    everything = _resolve(orthanc, provider, current, tmp_path / "cache")
    assert [r.study_date for r in everything.reports] == ["20230101", "20230601", "20240601"]


def test_priors_unavailable_when_every_source_fails_with_the_reason(orthanc, tmp_path):
    study = synthetic_study("PRIOR-UNAVAILABLE", "20240601")
    closed = free_port()  # nothing listens there
    providers: list[PriorProvider] = [
        DicomwebProvider(DicomwebAccess(f"http://127.0.0.1:{closed}/dicom-web"), TIMEOUT_S),
        # Orthanc refuses the find of an AE it does not know (and answers nothing: 3 s then)
        DimseProvider("127.0.0.1", orthanc.dicom_port, orthanc.aet, "STRANGER", 3.0),
    ]

    outcome = resolve_priors(study, providers, PriorCache(tmp_path / "cache"), lookback_days=1095, max_studies=12)

    assert outcome.reports == () and outcome.unavailable is not None
    assert outcome.unavailable.startswith("dicomweb: DICOMweb QIDO-RS failed: connection failed"), outcome
    assert "dimse: DIMSE:" in outcome.unavailable, outcome
    assert outcome.output_notes[-1] == f"priors unavailable: {outcome.unavailable}"
    assert "PRIOR-UNAVAILABLE" not in outcome.unavailable


def test_a_failing_source_falls_back_to_the_next(orthanc, tmp_path):
    baseline = _upload_sr(orthanc, tmp_path, synthetic_study("PRIOR-FALLBACK", "20240110"))
    providers: list[PriorProvider] = [DicomwebProvider(DicomwebAccess(f"http://127.0.0.1:{free_port()}/dicom-web"), TIMEOUT_S),
                                      _provider(orthanc, "dimse")]
    outcome = resolve_priors(synthetic_study("PRIOR-FALLBACK", "20240601"), providers, PriorCache(tmp_path / "cache"),
                             lookback_days=1095, max_studies=12)
    assert outcome.source == "dimse" and outcome.unavailable is None
    assert [r.sop_instance_uid for r in outcome.reports] == [baseline.SOPInstanceUID]


class _CountingDicomweb(DicomwebProvider):
    """The real DICOMweb source, counting its WADO-RS retrievals."""

    fetched = 0

    def fetch(self, location: SrLocation) -> Dataset:
        self.fetched += 1
        return super().fetch(location)


def test_a_second_study_of_the_patient_takes_its_priors_from_the_cache(orthanc, tmp_path):
    baseline = _upload_sr(orthanc, tmp_path, synthetic_study("PRIOR-CACHE", "20240110"))
    cache = PriorCache(tmp_path / "priors")
    source = _CountingDicomweb(DicomwebAccess(orthanc.dicomweb_url), TIMEOUT_S)

    first = resolve_priors(synthetic_study("PRIOR-CACHE", "20240601"), [source], cache, lookback_days=1095, max_studies=12)
    assert source.fetched == 1 and (tmp_path / "priors" / f"{baseline.SOPInstanceUID}.dcm").is_file()
    second = resolve_priors(synthetic_study("PRIOR-CACHE", "20240901"), [source], cache, lookback_days=1095, max_studies=12)

    assert source.fetched == 1, "the cached SR was fetched again"
    assert first.reports == second.reports and [r.sop_instance_uid for r in second.reports] == [baseline.SOPInstanceUID]


def test_a_credential_file_rotated_while_the_worker_runs_is_sent_from_the_next_lookup(tmp_path):
    """The source is built once, as the worker builds it at start, and kept: after the PACS's
    password and then our Secret are rotated, its next lookup finds the priors, with no restart."""
    pacs = Orthanc(tmp_path / "pacs", modality_port=free_port(), http_users={"rcds": "new-s3cret"})
    try:
        baseline = _upload_sr(pacs, tmp_path, synthetic_study("PRIOR-ROTATED", "20240110"))
        current = synthetic_study("PRIOR-ROTATED", "20240601")
        secret = SecretVolume(tmp_path / "prior-dicomweb-basic-auth", "basic-auth", "rcds:old-s3cret")
        (source,) = build_providers(load_config(environ={
            "RCDS_PRIOR_PROVIDERS": "dicomweb", "RCDS_PRIOR_DICOMWEB_URL": pacs.dicomweb_url,
            "RCDS_PRIOR_DICOMWEB_BASIC_AUTH_FILE": str(secret.path)}))

        def look_up(cache: str):
            return resolve_priors(current, [source], PriorCache(tmp_path / cache), lookback_days=1095, max_studies=12)

        refused = look_up("before")
        assert refused.reports == () and refused.unavailable is not None and "HTTP 401" in refused.unavailable
        secret.rotate("rcds:new-s3cret")
        found = look_up("after")
        assert found.unavailable is None and [r.sop_instance_uid for r in found.reports] == [baseline.SOPInstanceUID]
    finally:
        pacs.stop()


def test_a_pacs_that_wants_credentials_and_https_gets_them(tmp_path, monkeypatch):
    """Orthanc as a site opens it to other hosts: authentication on, behind a reverse proxy
    (nginx) that serves HTTPS with a certificate from the site's CA. The configured prior_dicomweb_basic_auth (a password with a colon and
    non-ASCII characters, sent as UTF-8) and prior_dicomweb_tls_ca_file find the priors, even
    with REQUESTS_CA_BUNDLE naming the system's CAs (which requests would otherwise use
    instead). Without credentials, or with a wrong password, the source fails with HTTP 401;
    without the site's CA, the TLS handshake fails; either way the study is scored without
    priors."""
    authority = make_authority(tmp_path / "ca", "Site")
    https = authority.issue(tmp_path / "ca", "pacs", server=True)
    pacs = Orthanc(tmp_path / "pacs", modality_port=free_port(), http_users={"rcds": "s3cret:päss€"})
    proxy = TlsProxy(tmp_path / "proxy", https, pacs.base)
    dicomweb_url = proxy.base + pacs.dicomweb_url.removeprefix(pacs.base)
    try:
        baseline = _upload_sr(pacs, tmp_path, synthetic_study("PRIOR-AUTH", "20240110"))
        current = synthetic_study("PRIOR-AUTH", "20240601")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        (configured,) = build_providers(load_config(environ={
            "RCDS_PRIOR_PROVIDERS": "dicomweb", "RCDS_PRIOR_DICOMWEB_URL": dicomweb_url,
            "RCDS_PRIOR_DICOMWEB_BASIC_AUTH": "rcds:s3cret:päss€", "RCDS_PRIOR_DICOMWEB_TLS_CA_FILE": str(authority.cert)}))
        found = resolve_priors(current, [configured], PriorCache(tmp_path / "cache"), lookback_days=1095, max_studies=12)
        assert found.unavailable is None and [r.sop_instance_uid for r in found.reports] == [baseline.SOPInstanceUID]
        refusals = {"HTTP 401": (DicomwebAccess(dicomweb_url, ca_file=authority.cert),
                                 DicomwebAccess(dicomweb_url, basic_auth="rcds:s3cret:pass", ca_file=authority.cert)),
                    "TLS failed": (DicomwebAccess(dicomweb_url, basic_auth="rcds:s3cret:päss€"),)}
        for number, (reason, accesses) in enumerate(refusals.items()):
            for access in accesses:
                refused = resolve_priors(current, [DicomwebProvider(access, TIMEOUT_S)],
                                         PriorCache(tmp_path / f"refused-{number}-{id(access)}"), lookback_days=1095,
                                         max_studies=12)
                assert refused.reports == () and refused.unavailable is not None and reason in refused.unavailable
                assert "s3cret" not in refused.unavailable
    finally:
        proxy.stop()
        pacs.stop()
