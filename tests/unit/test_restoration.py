"""A study's instances gone from the spool, put back from PACS (service.restoration): what is
asked for, what is written where, and when the index's retention mark is cleared.

The source here hands out files the test gives it, standing in for PACS: what is under test is
ours (which instances we keep and write, over what, and when we clear the mark), and the races
it must survive (an instance the listener stores while PACS sends) happen on cue only this way.
Retrieval from a real PACS, and the study scored again from what came back, are tested against
Orthanc (tests/integration/test_service_retrieval.py); a PACS that is not there, in
tests/unit/test_worker.py."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.config import PRIOR_PROVIDERS, Config
from service.errors import PriorNotHeld
from service.ingest.index import DONE, StudyIndex
from service.ingest.scp import describe_instance
from service.ingest.spool import Spool
from service.priors import build_providers
from service.priors.retrieve import Landing, RetrievingProvider, SeriesRequest
from service.restoration import OutsideSpool, SpoolRestoration
from tests.support import small_study


class _Pacs:
    """A retrieving source holding `held` (datasets): a series request gets that series' ones;
    `meanwhile` runs once PACS has sent them, before the caller writes anything."""

    name = "test-pacs"

    def __init__(self, held: list[Dataset], meanwhile: Callable[[], None] = lambda: None) -> None:
        self.held, self.meanwhile = held, meanwhile
        self.requests: list[SeriesRequest] = []

    def retrieve(self, request: SeriesRequest, landing: Landing) -> None:
        self.requests.append(request)
        for ds in self.held:
            if ds.SeriesInstanceUID == request.series_instance_uid:
                landing.write(request, lambda stream, ds=ds: ds.save_as(stream, enforce_file_format=True))
        self.meanwhile()


class _Study:
    """The small study (3 CT slices, an RTSTRUCT) received, done, and marked as retention marks
    it, its spooled files removed."""

    def __init__(self, root: Path) -> None:
        self.spool = Spool(root / "spool")
        self.index = StudyIndex(root / "index.sqlite")
        self.datasets = [*small_study.ct_slices()[:3], small_study.rtstruct()]
        self.datasets[-1].SeriesInstanceUID = generate_uid()
        self.contents: dict[Path, bytes] = {}
        for ds in self.datasets:
            path = self.spool.path_for(small_study.STUDY_UID, str(ds.SOPInstanceUID))
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            self.contents[path] = path.read_bytes()
            self.index.add_instance(describe_instance(ds, path, time.time() - 10))
        assert self.index.claim(small_study.STUDY_UID)
        assert self.index.finish(small_study.STUDY_UID, DONE, result=generate_uid())
        records = self.index.mark_files_removed(small_study.STUDY_UID, time.time() + 1)
        assert records is not None
        self.records = records
        for record in self.records:
            record.path.unlink()

    def restoration(self, pacs: _Pacs, root: Path) -> SpoolRestoration:
        return SpoolRestoration([pacs], self.index, self.spool.root, root / "retrieved")

    def marked(self) -> bool:
        return self.index.files_removed_at(small_study.STUDY_UID) is not None


@pytest.fixture
def study(tmp_path: Path) -> Iterator[_Study]:
    made = _Study(tmp_path)
    yield made
    made.index.close()


def test_every_instance_comes_back_where_it_was_as_it_was_sent_and_the_mark_goes(study: _Study, tmp_path: Path) -> None:
    grown = small_study.ct_slices()[3]  # PACS holds a slice more of the CT series than was sent
    pacs = _Pacs([*study.datasets, grown])
    assert study.restoration(pacs, tmp_path).restore(small_study.STUDY_UID, study.records) == 4
    assert {path: path.read_bytes() for path in study.contents} == study.contents
    assert sorted(path.name for path in study.spool.directory_for(small_study.STUDY_UID).iterdir()) == sorted(
        f"{ds.SOPInstanceUID}.dcm" for ds in study.datasets)  # the slice not sent is not kept
    ct_series, rt_series = (str(ds.SeriesInstanceUID) for ds in (study.datasets[0], study.datasets[-1]))
    assert pacs.requests == [SeriesRequest(small_study.STUDY_UID, series) for series in sorted((ct_series, rt_series))]
    assert not study.marked()
    assert not list((tmp_path / "retrieved").iterdir())


@pytest.mark.parametrize(("held", "message"), [
    (slice(1, None), r"^PACS no longer holds 1 of the 4 instances$"),  # a slice gone
    (slice(None, -1), r"^test-pacs: PACS holds no instance of a requested series$"),  # the RTSTRUCT's series gone
])
def test_instances_pacs_no_longer_holds_write_none_and_keep_the_mark(study: _Study, tmp_path: Path, held: slice,
                                                                       message: str) -> None:
    """PriorNotHeld: PACS answered, and asking again will not help (the worker fails the study
    at once instead of asking again for an hour)."""
    with pytest.raises(PriorNotHeld, match=message):
        study.restoration(_Pacs(study.datasets[held]), tmp_path).restore(small_study.STUDY_UID, study.records)
    assert not any(path.exists() for path in study.contents) and study.marked()


def test_an_instance_the_listener_stores_meanwhile_is_kept_over_pacs_copy(study: _Study, tmp_path: Path) -> None:
    sent_again = study.records[0].path

    def listener_stores() -> None:
        sent_again.write_bytes(b"what the sender sent again")
    restored = study.restoration(_Pacs(study.datasets, listener_stores), tmp_path).restore(
        small_study.STUDY_UID, study.records)
    assert restored == 4 and sent_again.read_bytes() == b"what the sender sent again"
    assert not list(sent_again.parent.glob(".*.tmp"))  # PACS's copy, not linked, is not left behind
    assert all(path.read_bytes() == content for path, content in study.contents.items() if path != sent_again)
    assert not study.marked()


def test_an_instance_gone_again_meanwhile_keeps_the_mark(study: _Study, tmp_path: Path) -> None:
    """A file the study still had is removed while PACS sends (retention's sweep finishing a
    removal): the mark is kept, and the caller told."""
    kept = study.records[0]
    kept.path.write_bytes(study.contents[kept.path])
    with pytest.raises(OSError, match="1 of its instances left the spool meanwhile"):
        study.restoration(_Pacs(study.datasets, lambda: kept.path.unlink(missing_ok=True)), tmp_path).restore(
            small_study.STUDY_UID, study.records)
    assert study.marked()


def test_an_index_placing_files_outside_the_spool_has_nothing_written_there(study: _Study, tmp_path: Path) -> None:
    moved = [dataclasses.replace(record, path=tmp_path / "elsewhere" / record.path.name) for record in study.records]
    pacs = _Pacs(study.datasets)
    with pytest.raises(OutsideSpool, match="the index places 4 of them outside the spool directory"):
        study.restoration(pacs, tmp_path).restore(small_study.STUDY_UID, moved)
    assert pacs.requests == [] and not (tmp_path / "elsewhere").exists()


def test_nothing_missing_asks_nothing(study: _Study, tmp_path: Path) -> None:
    for path, content in study.contents.items():
        path.write_bytes(content)
    pacs = _Pacs(study.datasets)
    assert study.restoration(pacs, tmp_path).restore(small_study.STUDY_UID, study.records) == 0
    assert pacs.requests == []


@pytest.mark.parametrize("name", PRIOR_PROVIDERS)
def test_the_sources_said_to_retrieve_are_those_that_do(tmp_path: Path, name: str) -> None:
    config = Config(var_dir=tmp_path, prior_providers=(name,), prior_dicomweb_url="http://127.0.0.1:1/dicom-web",
                    pacs_host="127.0.0.1", prior_directory=tmp_path)
    (provider,) = build_providers(config)
    assert config.prior_sources_retrieve == isinstance(provider, RetrievingProvider)
