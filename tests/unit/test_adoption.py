"""Adoption of a stale study from PACS: all of it indexed in one transaction, or nothing.

The retrieving source here writes the small synthetic study's files into the landing, standing
in for PACS: the fault under test is ours (the spool's disk fills up part-way), which no real
PACS can cause; retrieval itself is tested against Orthanc in tests/integration.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import BinaryIO

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import Comprehensive3DSRStorage, ExplicitVRLittleEndian

from service.adoption import Adoption
from service.ingest.index import StudyIndex
from service.ingest.scp import describe_instance, study_order
from service.ingest.spool import Spool
from service.priors.retrieve import Landing, SeriesRequest
from service.sop_classes import CT_IMAGE
from tests.support import small_study


class _StudyServer:
    """A retrieving source that hands out the given CT slices for any series request."""

    name = "test-pacs"

    def __init__(self, slices: list[Dataset]) -> None:
        self._slices = slices

    def retrieve(self, request: SeriesRequest, landing: Landing) -> None:
        for ds in self._slices:
            landing.write(request, lambda stream, ds=ds: ds.save_as(stream, enforce_file_format=True))


class _FillingSpool(Spool):
    """A spool whose disk is full from the `fails_at`-th instance on."""

    def __init__(self, root: Path, fails_at: int) -> None:
        super().__init__(root)
        self._left = fails_at - 1

    def store(self, study_instance_uid: str, sop_instance_uid: str, source: BinaryIO) -> Path:
        if self._left == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= 1
        return super().store(study_instance_uid, sop_instance_uid, source)


def _standing_sr(slices: list[Dataset]) -> Dataset:
    """What another replica's SR names as its evidence: the CT series."""
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = CT_IMAGE, slices[0].SOPInstanceUID
    series, study, sr = Dataset(), Dataset(), Dataset()
    series.SeriesInstanceUID, series.ReferencedSOPSequence = small_study.SERIES_UID, [reference]
    study.StudyInstanceUID, study.ReferencedSeriesSequence = small_study.STUDY_UID, [series]
    sr.StudyInstanceUID, sr.CurrentRequestedProcedureEvidenceSequence = small_study.STUDY_UID, [study]
    sr.SOPClassUID, sr.SOPInstanceUID = Comprehensive3DSRStorage, "1.2.826.0.1.3680043.8.498.50"
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID, sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPClassUID, sr.SOPInstanceUID
    return sr


def _adoption(tmp_path: Path, spool: Spool, slices: list[Dataset]) -> tuple[Adoption, StudyIndex]:
    index = StudyIndex(tmp_path / "index.sqlite")
    return Adoption([_StudyServer(slices)], index, spool, tmp_path / "retrieved", tmp_path / "reports"), index


def test_a_full_disk_part_way_leaves_nothing_of_the_study_indexed(tmp_path: Path) -> None:
    slices = small_study.ct_slices()
    adoption, index = _adoption(tmp_path, _FillingSpool(tmp_path / "spool", fails_at=3), slices)
    with pytest.raises(OSError, match="No space left"):
        adoption.adopt(_standing_sr(slices))
    assert index.study(small_study.STUDY_UID) is None


def test_an_adopted_study_is_indexed_whole_with_the_patients_study_order(tmp_path: Path) -> None:
    """All instances indexed, and the study ordered in time for the patient (a later follow-up of
    the patient finds it among its earlier studies)."""
    slices = small_study.ct_slices()
    for ds in slices:
        ds.StudyDate, ds.StudyTime = "20260101", "101500"
    adoption, index = _adoption(tmp_path, Spool(tmp_path / "spool"), slices)
    assert adoption.adopt(_standing_sr(slices)) == len(slices)
    assert index.study(small_study.STUDY_UID) is not None
    later = small_study.ct_slices()[0]
    later.StudyInstanceUID, later.StudyDate, later.StudyTime = "1.2.826.0.1.3680043.8.498.99", "20260301", "090000"
    later.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.100"
    (tmp_path / "later").mkdir()
    path = tmp_path / "later" / "later.dcm"
    later.save_as(path, enforce_file_format=True)
    index.add_instance(describe_instance(later, path, 0.0), study_order(later))
    assert [state.study_instance_uid for state in index.earlier_studies(later.StudyInstanceUID)] == [small_study.STUDY_UID]
