"""RECIST 1.1 and iRECIST through the running service and a real PACS (issue 14, docs/method.md 5.3).

`serve` delivers its SRs to Orthanc and pulls the patient's earlier SRs back from it (DICOMweb):
the baseline (STS_019), then two SYNTHETIC follow-ups 6 and 11 weeks later with the contour
scaled by 1.3 and 1.6 (tests/support/follow_up_study.py), treatment starting on the baseline's
date. By the guideline on the polygons (tests/integration/test_response_cli.py says why): the
second SR says iUPD, the third iCPD, continuing the state the second SR carried, which the
service only has from PACS. Read back with highdicom.
"""

from __future__ import annotations

import datetime

import highdicom as hd
import pydicom
import pytest

# the site helpers of the priors tests: one Orthanc as the service's PACS
from tests.support.pacs_site import running_site, send, study_uid_of
from tests.support.follow_up_study import write_follow_up
from tests.support.studies import copy_study
from tests.support.sr_groups import lesion_groups

pytestmark = pytest.mark.external
WEEKS = {"week-6": (42, 1.3), "week-11": (77, 1.6)}


def _categories(sr) -> dict[str, list[str]]:
    (group,) = [g for g in hd.sr.srread(sr).content.get_image_measurement_groups()
                if str(g.tracking_identifier) == "RECIST 1.1 assessment"]
    found: dict[str, list[str]] = {}
    for evaluation in group.get_qualitative_evaluations():
        found.setdefault(evaluation.name.value, []).append(evaluation.value.value)
    return found


def test_iupd_then_icpd_through_serve_and_orthanc(tmp_path, sts019):
    copy_study(sts019, tmp_path / "copy")
    baseline_rs = tmp_path / "copy" / "mask" / "RS.dcm"
    start = datetime.datetime.strptime(str(pydicom.dcmread(baseline_rs, stop_before_pixels=True).StudyDate), "%Y%m%d")
    with running_site(tmp_path / "site", prior_providers="dicomweb", treatment_start=start.date().isoformat()) as site:
        send(site.service, sts019)
        baseline_sr = site.sr(study_uid_of(sts019))
        site.in_pacs(baseline_sr)
        (lesion,) = lesion_groups(hd.sr.srread(baseline_sr).content)
        assert [e.value.value for e in lesion.get_qualitative_evaluations(name=hd.sr.CodedConcept(
            "112016", "DCM", "Baseline Category"))] == ["112074"]
        categories = {}
        for name, (days, scale) in WEEKS.items():
            date = (start + datetime.timedelta(days=days)).strftime("%Y%m%d")
            ct, rtstruct = write_follow_up(tmp_path / "copy" / "image", baseline_rs, tmp_path / name, scale=scale,
                                           study_date=date)
            send(site.service, ct, rtstruct)
            sr = site.sr(str(pydicom.dcmread(rtstruct, stop_before_pixels=True).StudyInstanceUID))
            site.in_pacs(sr)  # the next follow-up finds it there
            categories[name] = _categories(sr)
    assert categories["week-6"]["RECIST11TPR"] == ["OVPD"] and categories["week-6"]["IRECISTTPR"] == ["IUPD"]
    assert categories["week-11"]["IRECISTTPR"] == ["ICPD"]
