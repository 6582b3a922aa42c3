"""Series retrieval through the prior providers against a real Orthanc (reference configuration,
DICOMweb plugin): WADO-RS and C-GET of a series and of one instance, the limits, and a failing
source giving way to the next (service.priors.retrieve).

Orthanc holds STS_019 (47 CT slices, one RTSTRUCT): what a retrieval must give back is that
study's files, compared by SOP Instance UID and pixel data with the originals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import _config

from service.dicom_limits import InstanceLimits
from service.errors import PriorSourceError
from service.imaging.volume import read_ct_directory
from service.outputs.dicomweb_access import DicomwebAccess
from service.prior_ct import RetrievedPriorCt
from service.priors import dicomweb
from service.priors.dicomweb import DicomwebProvider
from service.priors.dimse import DimseProvider
from service.priors.retrieve import RetrievalLimits, RetrievingProvider, SeriesRequest, retrieve_series
from tests.support.orthanc import Orthanc
from tests.support.processes import LOOPBACK, free_port
from tests.support.service import OUR_AE

pytestmark = pytest.mark.external
TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def orthanc(sts019: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Orthanc holding STS_019 (no routing happens: nothing listens at the modality's port, and
    the study is only routed once stable, which these tests do not wait for)."""
    running = Orthanc(tmp_path_factory.mktemp("orthanc"), modality_port=free_port())
    try:
        running.upload(*sorted((sts019 / "image").iterdir()), sts019 / "mask" / "RS.dcm")
        yield running
    finally:
        running.stop()


def _dicomweb(orthanc: Orthanc) -> DicomwebProvider:
    return DicomwebProvider(DicomwebAccess(orthanc.dicomweb_url), TIMEOUT_S)


def _dimse(orthanc: Orthanc) -> DimseProvider:
    return DimseProvider(LOOPBACK, orthanc.dicom_port, orthanc.aet, OUR_AE, TIMEOUT_S)


def _provider(name: str, orthanc: Orthanc) -> RetrievingProvider:
    return _dicomweb(orthanc) if name == "dicomweb" else _dimse(orthanc)


def _header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def _ct_request(sts019: Path) -> SeriesRequest:
    first = _header(next((sts019 / "image").iterdir()))
    return SeriesRequest(str(first.StudyInstanceUID), str(first.SeriesInstanceUID))


def _rtstruct_request(sts019: Path) -> SeriesRequest:
    rs = _header(sts019 / "mask" / "RS.dcm")
    return SeriesRequest(str(rs.StudyInstanceUID), str(rs.SeriesInstanceUID), str(rs.SOPInstanceUID))


# DIMSE twice: receiving to disk (the listener's process-wide setting, as in `serve`) and not.
PROVIDERS = [("dicomweb", True), ("dimse", True), ("dimse", False)]


@pytest.mark.parametrize(("name", "chunked"), PROVIDERS, ids=["dicomweb", "dimse-to-disk", "dimse-in-memory"])
def test_a_series_and_an_instance_are_retrieved_as_pacs_holds_them(orthanc, sts019, tmp_path, monkeypatch, name,
                                                                   chunked):
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", chunked)
    paths = retrieve_series([_provider(name, orthanc)], [_ct_request(sts019), _rtstruct_request(sts019)],
                            tmp_path / "landing")
    originals = {str(_header(p).SOPInstanceUID): p for p in [*(sts019 / "image").iterdir(), sts019 / "mask" / "RS.dcm"]}
    retrieved = {str(_header(p).SOPInstanceUID): p for p in paths}
    assert retrieved.keys() == originals.keys()
    assert all(p.parent == tmp_path / "landing" for p in paths)
    for uid, path in retrieved.items():
        if path != paths[-1]:  # the CT slices: the same pixels
            np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, pydicom.dcmread(originals[uid]).pixel_array)


@pytest.mark.parametrize("name", ["dicomweb", "dimse"])
def test_the_prior_ct_is_read_from_what_pacs_returns_and_removed(orthanc, sts019, tmp_path, name):
    request = _ct_request(sts019)
    source = RetrievedPriorCt([_provider(name, orthanc)], tmp_path / "retrieved")
    ct = source(request.study_instance_uid, request.series_instance_uid)
    expected = read_ct_directory(sts019 / "image")
    assert ct is not None and ct.sop_instance_uids == expected.sop_instance_uids
    np.testing.assert_array_equal(ct.hu, expected.hu)
    assert list((tmp_path / "retrieved").iterdir()) == []


LIMITS = {  # case -> (limits, how the reason starts)
    "instances": (RetrievalLimits(max_instances=5), "retrieval stopped: more than 5 instances"),
    "bytes": (RetrievalLimits(max_bytes=100_000), "retrieval stopped: more than 100000 bytes"),
    "rows": (RetrievalLimits(InstanceLimits(max_rows=100)), "retrieved instance refused: Rows"),
}


@pytest.mark.parametrize("case", LIMITS)
@pytest.mark.parametrize("name", ["dicomweb", "dimse"])
def test_a_retrieval_over_a_limit_fails_and_leaves_nothing(orthanc, sts019, tmp_path, name, case):
    limits, reason = LIMITS[case]
    with pytest.raises(PriorSourceError) as raised:
        retrieve_series([_provider(name, orthanc)], [_ct_request(sts019)], tmp_path / "landing", limits)
    assert str(raised.value).startswith(f"{name}: {reason}"), raised.value
    assert not (tmp_path / "landing").exists()


def test_a_failing_source_gives_way_to_the_next(orthanc, sts019, tmp_path):
    down = DicomwebProvider(DicomwebAccess(f"http://{LOOPBACK}:{free_port()}/dicom-web"), TIMEOUT_S)
    paths = retrieve_series([down, _dimse(orthanc)], [_ct_request(sts019)], tmp_path / "landing")
    assert len(paths) == len(list((sts019 / "image").iterdir()))


@pytest.mark.parametrize("name", ["dicomweb", "dimse"])
def test_a_series_pacs_does_not_hold_is_a_failure(orthanc, sts019, tmp_path, name):
    request = _ct_request(sts019)
    missing = SeriesRequest(request.study_instance_uid, "1.2.826.0.1.3680043.8.498.1")
    with pytest.raises(PriorSourceError, match=f"^{name}: "):
        retrieve_series([_provider(name, orthanc)], [missing], tmp_path / "landing")
    assert not (tmp_path / "landing").exists()


def test_every_source_failing_names_each_failure(sts019, tmp_path):
    dead = free_port()
    providers: list[RetrievingProvider] = [
        DicomwebProvider(DicomwebAccess(f"http://{LOOPBACK}:{dead}/dicom-web"), TIMEOUT_S),
        DimseProvider(LOOPBACK, dead, "ORTHANC", OUR_AE, TIMEOUT_S)]
    with pytest.raises(PriorSourceError) as raised:
        retrieve_series(providers, [_ct_request(sts019)], tmp_path / "landing")
    assert str(raised.value) == ("dicomweb: DICOMweb WADO-RS failed: connection failed (refused or unreachable) "
                                 f"after {dicomweb.ATTEMPTS} attempts; "
                                 f"dimse: DIMSE: no association with ORTHANC at {LOOPBACK}:{dead} "
                                 "(refused, unreachable or timed out)")
