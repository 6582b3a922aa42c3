"""Location classes and their sources, in the order of precedence of docs/method.md section 1."""

import pytest

from service.model import CodedConcept
from service.location import LocationRules, anatomic_region_class

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


def test_site_rules_come_from_configuration_and_bad_classes_are_refused():
    from service.config import load_config
    from service.errors import ConfigError

    config = load_config(environ={
        "RCDS_LOCATION_NAME_RULES": '{"^bone": other, "axill": adenopathy}',
        "RCDS_SITE_MAPPING": '{"Target 1": liver}',
    })
    rules = config.location_rules
    assert rules.classify("Axilla L", None) == ("adenopathy", "roi_name")
    assert rules.classify("Target 1", None) == ("liver", "configuration")
    # Configured rules replace the built-in ones: "lung" no longer matches anything.
    assert rules.classify("Lung met RUL", None) == ("other", "default")
    with pytest.raises(ConfigError, match="unknown location classes \\['kidney'\\]"):
        load_config(environ={"RCDS_SITE_MAPPING": '{"T1": kidney}'})
    with pytest.raises(ConfigError, match="not a regular expression"):
        load_config(environ={"RCDS_LOCATION_NAME_RULES": '{"(": lung}'})


@pytest.mark.parametrize("pattern, name", [
    ("ln_", "LN_1"),  # the chart's example: an underscore in the pattern, capitals in the name
    ("GTV_LUNG", "gtv_lung"),  # capitals in the pattern
    ("^LN$", "ln"),
    (r"\bln\b", "LN_1"),  # word boundaries around an underscore-joined part
    ("lymph node", "Lymph_Node_3"),  # a space in the pattern, underscores in the name
])
def test_configured_rules_ignore_case_and_see_underscores_both_ways(pattern, name):
    rules = LocationRules(name_rules=((pattern, "adenopathy"),))
    assert rules.classify(name, None) == ("adenopathy", "roi_name")


@pytest.mark.parametrize("code, expected", [
    (CodedConcept("T-62000", "SRT", "Liver"), "liver"),
    (CodedConcept("T-28000", "SRT", "Lung"), "lung"),
    (CodedConcept("T-C4000", "SRT", "Lymph node"), "adenopathy"),
    (CodedConcept("T-D1600", "SRT", "Neck"), "head_and_neck"),
    (CodedConcept("10200004", "SCT", "Liver structure"), "liver"),
    (CodedConcept("10200004", "SRT", "Liver structure"), "liver"),  # an SCT id labelled SRT
    (CodedConcept("T-62000", "99LOCAL", "Liver"), None),  # another scheme's code of the same value
])
def test_an_anatomic_region_in_the_legacy_srt_form_names_its_class(code, expected):
    """SEGs (and prior SRs read back) still carry SNOMED-RT codes: T-62000 is SCT 10200004 (the
    mapping of DICOM PS3.16 that pydicom's Code applies); read as 'other', a lesion fails to
    match its own earlier self by location class."""
    assert anatomic_region_class(code) == expected
