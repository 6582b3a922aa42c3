"""A site's response rule settings (docs/method.md 5.3): the file, its refusals, and what they change.

Expected categories come from the rules themselves, re-stated here: RECIST 1.1 (Eisenhauer 2009
4.3.1) is PD when the target sum rose by at least pd_pct % of the nadir and by at least pd_abs_mm;
iRECIST (Seymour 2017) confirms an iUPD as iCPD at an assessment no earlier than confirm_min_days
(less the tolerance) after it, when the target sum rose by confirm_abs_mm more since the iUPD.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pydicom
import pytest
import yaml

from service.config import load_config
from service.errors import ConfigError
from service.follow_up import follow_up
from service.longitudinal.identity import CarriedIdentity
from service.longitudinal.links import Confidence, Link, LinkStatus, MatchMethod
from service.longitudinal.response_settings import IRecistSettings, RecistSettings
from service.longitudinal.settings_file import ResponseSettings, read_response_settings
from service.longitudinal.timepoint import Acquisition, TimepointLesion, UidSource
from service.model import LocationClass
from service.outputs.sr import build_measurement_report
from service.priors.reading import read_prior_report
from service.response import ResponseInputs, StudyLesions, assess_response
from tests.support.synthetic_results import make_study_result
from tests.support.written_outputs import write_sr

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "response-settings.yaml"
DAY_0 = datetime.date(2024, 1, 1)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_the_example_file_states_every_setting_at_its_default():
    document = yaml.safe_load(EXAMPLE.read_text())
    for section in dataclasses.fields(ResponseSettings):
        assert set(document[section.name]) == {f.name for f in dataclasses.fields(section.default)}, section.name
    assert read_response_settings(EXAMPLE) == ResponseSettings()
    assert read_response_settings(None) == ResponseSettings()


def test_the_timing_and_small_lesion_settings_are_read(tmp_path):
    rules = read_response_settings(_file(tmp_path, "recist:\n  small_lesion_policy: recist_5mm_if_below\n"
                                                   "  sd_min_days: 42\n  baseline_max_days_before_start: 35\n"))
    assert rules.recist == dataclasses.replace(RecistSettings(), small_lesion_policy="recist_5mm_if_below",
                                               sd_min_days=42, baseline_max_days_before_start=35)


def test_a_file_sets_only_what_it_states(tmp_path):
    rules = read_response_settings(_file(tmp_path, "recist:\n  pd_pct: 10\n  target_selection: largest_first\n"
                                                   "kinetics:\n  hpd_definitions: [kas, kato]\n"))
    assert rules.recist == dataclasses.replace(RecistSettings(), pd_pct=10.0, target_selection="largest_first")
    assert [str(d) for d in rules.kinetics.hpd_definitions] == ["kas", "kato"]
    assert rules.irecist == IRecistSettings()


@pytest.mark.parametrize("text, named", [
    ("recsit:\n  pd_pct: 10\n", "recsit"),
    ("recist:\n  pd_percent: 10\n", "recist.pd_percent"),
    ("recist:\n  pd_pct: twenty\n", "recist.pd_pct must be a number"),
    ("recist:\n  max_targets: 2.5\n", "recist.max_targets must be a whole number"),
    ("recist:\n  max_targets: true\n", "recist.max_targets must be a whole number"),
    ("recist:\n  nodes_one_organ: 1\n", "recist.nodes_one_organ must be true or false"),
    ("recist:\n  pd_pct: -20\n", "recist.pd_pct must be positive"),
    ("recist:\n  pd_abs_mm: -1\n", "recist.pd_abs_mm must be zero or more"),
    ("recist:\n  pr_pct: 30\n", "recist.pr_pct must be between -100 and 0"),
    ("recist:\n  max_targets: 0\n", "recist.max_targets must be at least 1"),
    ("recist:\n  max_targets: 1\n", "recist.max_targets_per_organ"),
    ("recist:\n  node_normal_sa_mm: 16\n", "recist.node_normal_sa_mm"),
    ("recist:\n  target_selection: biggest\n", "recist.target_selection must be one of"),
    ("recist:\n  new_lesion_policy: ignore\n", "recist.new_lesion_policy must be one of"),
    ("recist:\n  small_lesion_policy: five\n", "recist.small_lesion_policy must be one of"),
    ("recist:\n  sd_min_days: -7\n", "recist.sd_min_days must be zero or more"),
    ("recist:\n  sd_min_days: 6 weeks\n", "recist.sd_min_days must be a whole number"),
    ("recist:\n  baseline_max_days_before_start: -1\n", "recist.baseline_max_days_before_start must be zero"),
    ("recist:\n  target_name_regex: '^T('\n", "recist.target_name_regex is not a regular expression"),
    ("irecist:\n  confirm_min_days: 60\n", r"irecist.confirm_min_days \(60\) must not exceed irecist.confirm_max_days"),
    ("irecist:\n  confirm_tolerance_days: -2\n", "irecist.confirm_tolerance_days must be zero or more"),
    ("kinetics:\n  hpd_definitions: []\n", "kinetics.hpd_definitions must be a non-empty list"),
    ("kinetics:\n  hpd_definitions: [champiat, matos]\n", "kinetics.hpd_definitions must be one of"),
    ("kinetics:\n  hpd_definitions: [kas, kas]\n", "kinetics.hpd_definitions must be a list without repetitions"),
    ("kinetics:\n  days_per_month: 0\n", "kinetics.days_per_month must be positive"),
    ("kinetics: [days_per_month]\n", "kinetics must be a mapping"),
    ("- recist\n", "expected sections"),
])
def test_a_wrong_setting_stops_the_start_naming_it(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named):
        read_response_settings(_file(tmp_path, text))


def test_the_service_reads_the_file_at_start_from_the_environment(tmp_path):
    config = load_config(environ={"RCDS_RESPONSE_SETTINGS_FILE": str(_file(tmp_path, "irecist:\n  confirm_max_days: 9\n"))})
    with pytest.raises(ConfigError, match="irecist.confirm_min_days"):
        ResponseInputs.from_config(config)
    with pytest.raises(ConfigError, match="cannot read"):
        ResponseInputs.from_config(dataclasses.replace(config, response_settings_file=tmp_path / "absent.yaml"))


def _lesion(uid: str, d: float) -> TimepointLesion:
    return TimepointLesion(uid, uid, UidSource.CARRIED, uid, 1, "liver", (0.0, 0.0, 0.0), d, d / 2, d / 10)


def _series(sizes_days: list[tuple[float, int]], rules: ResponseSettings):
    """One target, "1.1", at each (diameter mm, day) in turn; the last study is the current one."""
    studies = [StudyLesions(f"1.2.{i}", DAY_0 + datetime.timedelta(days=day),
                            (DAY_0 + datetime.timedelta(days=day)).strftime("%Y%m%d"),
                            (_lesion("1.1", d),), 1.0, {"1.1": "target"}, {})
               for i, (d, day) in enumerate(sizes_days)]
    now = _lesion("own", sizes_days[-1][0])
    current = dataclasses.replace(studies[-1], lesions=(now,), categories={})
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), studies[-2].lesions)]
    percent = 100 * (sizes_days[-1][0] - sizes_days[0][0]) / sizes_days[0][0]
    outcome = assess_response(current, studies[:-1], links, {"own": CarriedIdentity("1.1", "1.1")},
                              {"1.1": percent}, ResponseInputs(rules=rules))
    assert outcome.assessment is not None
    return outcome.assessment


def _recist_pd(sod: float, nadir: float, pd_pct: float, pd_abs_mm: float) -> bool:
    return (sod - nadir) / nadir * 100 >= pd_pct and sod - nadir >= pd_abs_mm


def test_site_pd_thresholds_change_the_recist_category():
    """20 -> 23 mm: +15 %, +3 mm. Under the guideline (20 %, 5 mm) not PD: SD; a site's 10 % and
    3 mm make it PD. Both thresholds are needed: 10 % alone still fails the 5 mm rule."""
    rules = {"default": RecistSettings(), "10 %": dataclasses.replace(RecistSettings(), pd_pct=10.0),
             "10 %, 3 mm": dataclasses.replace(RecistSettings(), pd_pct=10.0, pd_abs_mm=3.0)}
    for name, recist in rules.items():
        expected = "PD" if _recist_pd(23.0, 20.0, recist.pd_pct, recist.pd_abs_mm) else "SD"
        assessment = _series([(20.0, 0), (23.0, 42)], ResponseSettings(recist=recist))
        assert (name, assessment.overall) == (name, expected)
    assert [_recist_pd(23.0, 20.0, r.pd_pct, r.pd_abs_mm) for r in rules.values()] == [False, False, True]


def test_confirm_min_days_decides_whether_a_rise_confirms_the_iupd():
    """20 -> 30 mm at day 42 (+50 %, +10 mm: PD, iUPD), 30 -> 36 mm 21 days later (+6 mm since
    iUPD, >= 5 mm). The guideline's window opens at 28 days (26 with the tolerance): too early,
    still iUPD; a site's 14 days (12) confirms: iCPD."""
    sizes = [(20.0, 0), (30.0, 42), (36.0, 63)]
    default = _series(sizes, ResponseSettings())
    assert (default.overall, default.irecist) == ("PD", "iUPD")
    iupd = DAY_0 + datetime.timedelta(days=42)
    assert default.confirmation_window == ((iupd + datetime.timedelta(days=28)).isoformat(),
                                           (iupd + datetime.timedelta(days=56)).isoformat())
    site = _series(sizes, ResponseSettings(irecist=dataclasses.replace(IRecistSettings(), confirm_min_days=14)))
    assert site.irecist == "iCPD"


def test_the_uid_key_and_the_notes_name_each_setting_not_at_its_default():
    assert ResponseInputs().key() == [] and ResponseInputs().notes() == []
    pd10 = ResponseInputs(rules=ResponseSettings(recist=dataclasses.replace(RecistSettings(), pd_pct=10.0)))
    pd15 = ResponseInputs(rules=ResponseSettings(recist=dataclasses.replace(RecistSettings(), pd_pct=15.0)))
    assert pd10.key() == ["rule:recist.pd_pct=10.0"] and pd15.key() != pd10.key()
    assert pd10.notes() == ["response rule settings not at their defaults: recist.pd_pct 10.0 (default 20.0)"]


def test_the_sr_states_the_settings_and_another_setting_gives_another_sr(tmp_path):
    """A baseline report (no priors) through follow_up and the SR writer, read back as PACS would
    give it: the same settings give the same SOP Instance UID, other settings another."""
    result, evidence = make_study_result(1, "RTSTRUCT")
    result = dataclasses.replace(result, lesions=[dataclasses.replace(lesion, location_class=LocationClass("liver"))
                                                  for lesion in result.lesions])
    first = next(ds for ds in evidence if ds.Modality == "CT")
    acquisition = Acquisition(float(first.KVP), str(first.ConvolutionKernel), float(first.SliceThickness))
    site = ResponseInputs(rules=read_response_settings(_file(tmp_path, "kinetics:\n  hpd_definitions: [kas]\n")))

    def report(inputs: ResponseInputs, name: str) -> pydicom.Dataset:
        followed = follow_up(result, None, acquisition, (), inputs=inputs)
        path = write_sr(build_measurement_report(followed.result, evidence, comparison=followed.comparison),
                        tmp_path / name)
        return pydicom.dcmread(path)

    default, again, other = report(ResponseInputs(), "a"), report(ResponseInputs(), "b"), report(site, "c")
    assert default.SOPInstanceUID == again.SOPInstanceUID != other.SOPInstanceUID
    line = ("response rule settings not at their defaults: kinetics.hpd_definitions kas "
            "(default champiat,saada_bouzid,ferrara,kas)")
    assert line in read_prior_report(other).notes
    assert not any("rule settings" in note for note in read_prior_report(default).notes)
