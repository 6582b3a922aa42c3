"""Location classes and their sources, in method.md's order of precedence."""

import pytest

from service.model import CodedConcept
from service.scoring.location import LocationRules

LIVER = CodedConcept("10200004", "SCT", "Liver")


@pytest.mark.parametrize("name, expected", [
    ("GTV_Mass_CT", ("other", "default")), ("LN_mediastinal", ("adenopathy", "roi_name")),
    ("Lung met RUL", ("lung", "roi_name")), ("hepatic lesion 2", ("liver", "roi_name")),
    ("neck node L II", ("adenopathy", "roi_name")), ("Parotid_L", ("head_and_neck", "roi_name")),
])
def test_name_rules(name, expected):
    assert LocationRules().classify(name, None) == expected


def test_precedence_configuration_then_seg_code_then_name():
    rules = LocationRules(site_mapping={"Lung met RUL": "adenopathy"})
    assert rules.classify("Lung met RUL", LIVER) == ("adenopathy", "configuration")
    assert rules.classify("lung lesion", LIVER) == ("liver", "seg_anatomic_region")
    assert rules.classify("lung lesion", CodedConcept("123", "SCT", "Unknown")) == ("lung", "roi_name")
