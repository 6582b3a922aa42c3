"""serve's `directory` prior source (prior_directory): a directory of many patients' SRs of ours,
written by the real SR builder for synthetic studies of synthetic patients, resolved under the
same rules as the PACS sources (tests/integration/test_priors.py asks Orthanc the same)."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from service.config import Config
from service.errors import ConfigError
from service.model import StudyInfo
from service.priors.files import FilesProvider
from service.priors import PriorCache, build_providers, resolve_priors
from tests.support.prior_srs import our_sr, synthetic_study
from tests.support.written_outputs import write_sr


def _write_sr(directory: Path, study: StudyInfo, *, predecessor: Dataset | None = None,
              version: str = "0.1.0") -> Dataset:
    """Our SR of `study` (tests.support.prior_srs) written into `directory`."""
    return pydicom.dcmread(write_sr(our_sr(study, predecessor=predecessor, version=version), directory))


def _resolve(directory: Path, study: StudyInfo, cache: Path, **settings: object):
    config = Config(prior_providers=("directory",), prior_directory=directory, **settings)  # type: ignore[arg-type]
    return resolve_priors(study, build_providers(config), PriorCache(cache), lookback_days=config.prior_lookback_days,
                          max_studies=config.prior_max_studies)


def test_the_patients_earlier_srs_in_the_directory_are_the_priors(tmp_path):
    archive = tmp_path / "outbox"
    baseline = _write_sr(archive / "2024" / "01", synthetic_study("FILES-A", "20240110"))  # searched recursively
    follow_up = _write_sr(archive, synthetic_study("FILES-A", "20240320"))
    current = synthetic_study("FILES-A", "20240601")
    _write_sr(archive, current)  # the current study's own SR: never its own prior
    _write_sr(archive, synthetic_study("FILES-A", "20240701"))  # later: not a prior
    _write_sr(archive, synthetic_study("FILES-B", "20240201"))  # another patient: not found, not noted
    (archive / "notes.txt").write_text("not DICOM")  # skipped
    in_progress = copy.deepcopy(baseline)  # the outbox's write in progress: not there yet
    in_progress.SOPInstanceUID, in_progress.ContentDate = "1.2.826.0.1.3680043.8.498.1", "20991231"
    in_progress.save_as(archive / ".in-progress.dcm.tmp")

    outcome = _resolve(archive, current, tmp_path / "cache")

    assert (outcome.source, outcome.unavailable, outcome.notes) == ("directory", None, ())
    assert [r.sop_instance_uid for r in outcome.reports] == [baseline.SOPInstanceUID, follow_up.SOPInstanceUID]
    assert len(outcome.reports[0].lesions) == 2


def test_superseded_identity_lookback_and_count_as_for_pacs(tmp_path):
    archive = tmp_path / "outbox"
    _write_sr(archive, synthetic_study("FILES-C", "20200101"))  # more than 1095 days before
    first = _write_sr(archive, synthetic_study("FILES-C", "20230101"))
    second = _write_sr(archive, synthetic_study("FILES-C", "20230101"), predecessor=first, version="0.2.0")
    _write_sr(archive, synthetic_study("FILES-C", "20230601", birth_date="19710505"))
    latest = _write_sr(archive, synthetic_study("FILES-C", "20240101"))
    current = synthetic_study("FILES-C", "20240601")

    outcome = _resolve(archive, current, tmp_path / "cache")
    assert [r.sop_instance_uid for r in outcome.reports] == [second.SOPInstanceUID, latest.SOPInstanceUID]
    assert outcome.notes == ("prior SR ignored: patient birth date differs",)

    one = _resolve(archive, current, tmp_path / "cache-one", prior_max_studies=1)
    assert [r.sop_instance_uid for r in one.reports] == [latest.SOPInstanceUID]


def test_a_missing_directory_makes_priors_unavailable_with_the_reason(tmp_path):
    outcome = _resolve(tmp_path / "absent", synthetic_study("FILES-D", "20240601"), tmp_path / "cache")
    assert outcome.reports == ()
    assert outcome.output_notes == ("priors unavailable: directory: prior_directory: no such directory",)


def test_files_needs_its_directory():
    with pytest.raises(ConfigError, match="prior_providers has directory but prior_directory is not set"):
        Config(prior_providers=("directory",))


def test_named_srs_outside_the_window_are_noted_not_dropped_silently(tmp_path):
    """SRs named one by one (score --prior) are all returned; the resolver keeps those before
    the study within the lookback, and says how many studies it left out and why."""
    named = tmp_path / "named"
    kept = _write_sr(named, synthetic_study("FILES-E", "20240101"))
    _write_sr(named, synthetic_study("FILES-E", "20200101"))  # more than 1095 days before
    _write_sr(named, synthetic_study("FILES-E", "20240701"))  # after the current study
    current = synthetic_study("FILES-E", "20240601")

    outcome = resolve_priors(current, [FilesProvider([named])], PriorCache(tmp_path / "cache"), lookback_days=1095,
                             max_studies=12)

    assert [r.sop_instance_uid for r in outcome.reports] == [kept.SOPInstanceUID]
    assert outcome.notes == ("1 earlier study with our SR ignored: before the lookback (prior_lookback_days)",
                             "1 study with our SR ignored: not before this study (a prior must be earlier)")


def test_a_study_without_patient_id_looks_up_no_priors(tmp_path):
    """An empty PatientID would find every other anonymised study's SR (their birth date and
    sex empty too): another patient's lesions would become this study's baseline."""
    archive = tmp_path / "outbox"
    _write_sr(archive, synthetic_study("", "20240101"))
    outcome = _resolve(archive, synthetic_study("", "20240601"), tmp_path / "cache")
    assert (outcome.reports, outcome.notes) == ((), ("priors not looked up: the study has no PatientID",))
