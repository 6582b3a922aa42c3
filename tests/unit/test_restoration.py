"""What the worker asks PACS for to put back a study's instances gone from the spool
(service.restoration), and which configured sources can. Retrieval itself, and the study scored
again from what came back, are tested against Orthanc (tests/integration/test_service_retrieval.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import PRIOR_PROVIDERS, Config
from service.ingest.index import InstanceRecord
from service.priors import build_providers
from service.priors.retrieve import RetrievingProvider, SeriesRequest
from service.restoration import _requests

STUDY = "1.2.3"


def _record(series: str, sop: str, tmp_path: Path, present: bool) -> InstanceRecord:
    path = tmp_path / f"{sop}.dcm"
    if present:
        path.write_bytes(b"DICM")
    return InstanceRecord(sop, "1.2.840.10008.5.1.4.1.1.2", STUDY, series, "CT", "1.9", (), path, 0.0)


def test_a_series_that_lost_every_instance_is_asked_for_whole_one_that_kept_some_by_instance(tmp_path: Path) -> None:
    records = [*(_record("ct", f"ct.{k}", tmp_path, present=False) for k in range(3)),
               _record("rt", "rt.old", tmp_path, present=False), _record("rt", "rt.late", tmp_path, present=True)]
    missing = {record.sop_instance_uid: record for record in records if not record.path.is_file()}
    assert _requests(records, missing) == [SeriesRequest(STUDY, "ct"), SeriesRequest(STUDY, "rt", "rt.old")]


@pytest.mark.parametrize("name", PRIOR_PROVIDERS)
def test_the_sources_said_to_retrieve_are_those_that_do(tmp_path: Path, name: str) -> None:
    config = Config(var_dir=tmp_path, prior_providers=(name,), prior_dicomweb_url="http://127.0.0.1:1/dicom-web",
                    pacs_host="127.0.0.1", prior_directory=tmp_path)
    (provider,) = build_providers(config)
    assert config.prior_sources_retrieve == isinstance(provider, RetrievingProvider)
