"""Signature files: the schema, validation that names the field, the linear score, preprocessing checks."""

import copy
import json
import re
from importlib import resources

import jsonschema
import pytest

from service.errors import SignatureError
from service.model import LocationClass
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import DEFAULT_SIGNATURE, SCHEMA_FILE, load_signature, parse_signature


def _shipped(name):
    return json.loads(resources.files("service.signatures").joinpath(name).read_text())


@pytest.fixture
def document():
    return _shipped(DEFAULT_SIGNATURE)


@pytest.fixture(scope="module")
def schema():
    return _shipped(SCHEMA_FILE)


def test_shipped_signature_is_valid_under_the_schema(schema):
    # jsonschema directly, independently of our loader
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(_shipped(DEFAULT_SIGNATURE))


def test_schema_documents_every_property(schema):
    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub, f"{where}.{name} has no description"
            for key, sub in node.items():
                if key != "if":  # a condition, not a declaration
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")
    walk(schema, "schema")


def test_schema_matches_the_engine(schema):
    """The schema's lists are the engine's: settings keys and location classes cannot drift."""
    assert set(schema["properties"]["preprocessing"]["properties"]) == set(ExtractionSettings().as_dict())
    location_rule = schema["$defs"]["categorical"]["allOf"][0]
    assert location_rule["if"]["properties"]["kind"]["const"] == "location_class"
    assert tuple(location_rule["then"]["properties"]["equals"]["enum"]) == tuple(LocationClass)


def test_shipped_cd8_signature_has_the_published_structure_and_signs():
    signature = load_signature()
    assert signature.status == "uncalibrated"
    assert "research use only" in signature.status_note
    assert len(signature.variables) + len(signature.categorical) == 8  # docs/method.md section 3
    by_feature = {(v.region, v.feature): v.coefficient for v in signature.variables}
    # Sun 2018: core min intensity (-), core SRHGE (-), ring SRLGE, LGRE, LRLGE (+)
    assert by_feature[("core", "stat_min")] < 0
    assert by_feature[("core", "rlm_srhge_3D_avg")] < 0
    for feature in ("rlm_srlge_3D_avg", "rlm_lgre_3D_avg", "rlm_lrlge_3D_avg"):
        assert by_feature[("ring", feature)] > 0
    kinds = [term.kind for term in signature.categorical]
    assert kinds.count("location_class") == 2 and kinds.count("kvp") == 1
    assert signature.default_cutoff == "reference" and signature.default_cutoff in signature.cutoffs


def test_score_is_intercept_plus_terms(document):
    signature = parse_signature(document)
    features = {"core": {}, "ring": {}}
    expected = signature.intercept
    for variable in signature.variables:
        raw = variable.minimum + 0.25 * (variable.maximum - variable.minimum)  # normalises to 0.25
        features[variable.region][variable.feature] = raw
        expected += 0.25 * variable.coefficient
    liver = next(t for t in signature.categorical if t.equals == "liver")
    kvp = next(t for t in signature.categorical if t.kind == "kvp")
    expected += liver.coefficient + kvp.coefficient
    score, contributions = signature.score(features, "liver", float(kvp.equals))
    assert score == pytest.approx(expected)
    assert contributions[liver.name] == pytest.approx(liver.coefficient)
    assert set(contributions) == {v.name for v in signature.variables} | {t.name for t in signature.categorical}
    assert sum(contributions.values()) + signature.intercept == pytest.approx(score)


def test_normalisation_clips_to_unit_range(document):
    signature = parse_signature(document)
    variable = signature.variables[0]
    assert variable.normalise(variable.maximum * 10 + 1000) == 1.0
    assert variable.normalise(variable.minimum - 1000) == 0.0


def test_clip_defaults_to_true_and_can_be_switched_off(document):
    del document["variables"][0]["normalisation"]["clip"]
    document["variables"][1]["normalisation"]["clip"] = False
    signature = parse_signature(document)
    assert signature.variables[0].clip is True
    assert signature.variables[1].normalise(signature.variables[1].maximum * 2) == pytest.approx(2.0)


def _delete(*path):
    def change(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


def _set(value, *path):
    def change(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _duplicate_cutoff(document):
    document["cutoffs"].append(dict(document["cutoffs"][0], value=2.0))


BROKEN = {
    # schema: missing field, wrong type, bad enum, unknown field, empty list
    "missing top-level field": (_delete("citation"), "citation: missing required field"),
    "missing nested field": (_delete("variables", 2, "coefficient"), "variables[2].coefficient: missing required field"),
    "missing bound": (_delete("variables", 3, "normalisation", "min"), "variables[3].normalisation.min: missing required field"),
    "wrong type": (_set("2.3", "intercept"), "intercept: must be a number"),
    "wrong nested type": (_set("yes", "variables", 0, "normalisation", "clip"), "variables[0].normalisation.clip: must be true or false"),
    "bool is not a number": (_set(True, "categorical", 1, "coefficient"), "categorical[1].coefficient: must be a number"),
    "bad status": (_set("experimental", "status"), "status: must be one of \"validated\", \"uncalibrated\""),
    "bad region": (_set("peritumoral", "variables", 1, "region"), "variables[1].region: must be one of \"core\", \"ring\""),
    "bad kind": (_set("sex", "categorical", 0, "kind"), "categorical[0].kind: must be one of"),
    "bad location class": (_set("brain", "categorical", 0, "equals"), "categorical[0].equals: must be one of \"adenopathy\""),
    "kvp must be a number": (_set("120", "categorical", 2, "equals"), "categorical[2].equals: must be a number"),
    "unknown field": (_set(1, "variables", 4, "weight"), "variables[4].weight: unknown field"),
    "unknown preprocessing key": (_set(10, "preprocessing", "binWdth"), "preprocessing.binWdth: unknown field"),
    # the engine rounds by default: a signature must say whether it was calibrated with rounding
    "rounding not stated": (_delete("preprocessing", "intensityRounding"), "preprocessing.intensityRounding: missing required field"),
    "no cut-off": (_set([], "cutoffs"), "cutoffs: must not be empty"),
    "cut-off without description": (_delete("cutoffs", 0, "description"), "cutoffs[0].description: missing required field"),
    "no variable": (_set([], "variables"), "variables: must not be empty"),
    # semantic rules
    "max equals min": (_set(-1000.0, "variables", 0, "normalisation", "max"), "variables[0].normalisation.max: must be greater than min"),
    "max below min": (_set(-2000.0, "variables", 0, "normalisation", "max"), "variables[0].normalisation.max: must be greater than min"),
    "unknown default cut-off": (_set("optimised", "default_cutoff"), "default_cutoff: names 'optimised', which is not a cut-off"),
    "duplicate variable name": (_set("core_minimum", "variables", 3, "name"), "variables[3].name: duplicate name 'core_minimum'"),
    "term name reused": (_set("ring_glrlm_lgre", "categorical", 2, "name"), "categorical[2].name: duplicate name 'ring_glrlm_lgre' (also variables[3].name)"),
    "duplicate cut-off name": (_duplicate_cutoff, "cutoffs[1].name: duplicate cut-off name 'reference'"),
    "unknown feature": (_set("rlm_bogus_3D_avg", "variables", 2, "feature"), "variables[2].feature: 'rlm_bogus_3D_avg' is not a feature this engine computes"),
    "unknown pyradiomics feature": (_set("glrlm_Bogus", "variables", 2, "feature"), "variables[2].feature: 'glrlm_Bogus' is not a feature"),
    "pyradiomics name of an IBSI feature": (
        _set("glrlm_ShortRunHighGrayLevelEmphasis", "variables", 1, "feature"),
        "variables[1].feature: this engine names the feature 'rlm_srhge_3D_avg'",
    ),
    "2.5D name under 3D preprocessing": (
        _set("rlm_srhge_2_5D_avg", "variables", 1, "feature"), "variables[1].feature: this engine names the feature 'rlm_srhge_3D_avg'",
    ),
    "shape feature of the ring": (_set("morph_volume", "variables", 4, "feature"), "variables[4].feature: 'morph_volume' is a shape feature"),
}


@pytest.mark.parametrize("change, message", BROKEN.values(), ids=BROKEN.keys())
def test_invalid_documents_name_the_field(document, change, message):
    broken = copy.deepcopy(document)
    change(broken)
    with pytest.raises(SignatureError, match="^cd8.json: .*" + re.escape(message)):
        parse_signature(broken, "cd8.json")


def test_every_problem_is_reported_at_once(document):
    del document["variables"][0]["coefficient"]
    document["status"] = "draft"
    with pytest.raises(SignatureError) as raised:
        parse_signature(document, "cd8.json")
    assert "status: must be one of" in str(raised.value)
    assert "variables[0].coefficient: missing required field" in str(raised.value)


def test_a_document_must_be_an_object():
    with pytest.raises(SignatureError, match=r"^x.json: \(document\): must be an object"):
        parse_signature([], "x.json")


def test_files_that_are_not_json_are_refused(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SignatureError, match="bad.json: not valid JSON"):
        load_signature(tmp_path / "bad.json")
    (tmp_path / "nan.json").write_text('{"intercept": NaN}')
    with pytest.raises(SignatureError, match="nan.json: not valid JSON"):
        load_signature(tmp_path / "nan.json")
    with pytest.raises(SignatureError, match="cannot read signature file"):
        load_signature(tmp_path / "absent.json")


def test_feature_names_follow_force2d(document):
    document["preprocessing"]["force2D"] = True
    with pytest.raises(SignatureError, match=r"variables\[1\]\.feature: this engine names the feature 'rlm_srhge_2_5D_avg'"):
        parse_signature(document, "cd8.json")
    for variable in document["variables"]:
        variable["feature"] = variable["feature"].replace("_3D_avg", "_2_5D_avg")
    assert parse_signature(document).variables[1].feature == "rlm_srhge_2_5D_avg"


def test_scoring_refuses_other_preprocessing():
    signature = load_signature()
    signature.check_preprocessing(ExtractionSettings())
    with pytest.raises(SignatureError, match=r"requires binWidth=10\.0 but the run uses 25\.0"):
        signature.check_preprocessing(ExtractionSettings(binWidth=25.0))
    with pytest.raises(SignatureError, match=r"requires resampledPixelSpacing=\[1\.0, 1\.0, 1\.0\] but the run uses \[2\.0, 2\.0, 2\.0\]"):
        signature.check_preprocessing(ExtractionSettings(resampledPixelSpacing=(2.0, 2.0, 2.0)))


SITE_SIGNATURE = {
    "id": "site-cd8",
    "version": "2.0",
    "status": "validated",
    "status_note": "calibrated on the site's cohort",
    "citation": "Site calibration report 2026-01.",
    "preprocessing": {"binWidth": 25.0, "force2D": False, "intensityRounding": True},
    "variables": [
        {"name": "core_mean", "region": "core", "feature": "stat_mean",
         "normalisation": {"min": -100.0, "max": 100.0}, "coefficient": 2.0},
        {"name": "ring_lgze", "region": "ring", "feature": "szm_lgze_3D",
         "normalisation": {"min": 0.0, "max": 0.5, "clip": False}, "coefficient": -1.0},
    ],
    "categorical": [{"name": "lung", "kind": "location_class", "equals": "lung", "coefficient": 0.5}],
    "intercept": 1.0,
    "cutoffs": [
        {"name": "site_optimised", "value": 1.5, "description": "maximally selected rank statistics, site cohort"},
        {"name": "conservative", "value": 2.5, "description": "site cohort, 90th percentile"},
    ],
    "default_cutoff": "site_optimised",
}


def test_installing_another_signature_is_a_file(tmp_path):
    path = tmp_path / "site.json"
    path.write_text(json.dumps(SITE_SIGNATURE))
    signature = load_signature(path)
    assert (signature.id, signature.version, signature.status) == ("site-cd8", "2.0", "validated")
    features = {"core": {"stat_mean": 150.0}, "ring": {"szm_lgze_3D": 0.75}}
    score, contributions = signature.score(features, "lung", kvp=100.0)
    # 1.0 + 2.0 x clip((150 + 100) / 200 = 1.25) + (-1.0) x (0.75 / 0.5 = 1.5, not clipped) + 0.5 x 1
    assert contributions == pytest.approx({"core_mean": 2.0, "ring_lgze": -1.5, "lung": 0.5})
    assert score == pytest.approx(2.0)
    assert signature.classify(score) == "high"
    assert signature.classify(score, "conservative") == "low"
    assert signature.classify(1.49) == "low"
    # its preprocessing, not the shipped signature's, is what scoring checks
    signature.check_preprocessing(ExtractionSettings(binWidth=25.0))
    with pytest.raises(SignatureError, match=r"site-cd8 requires binWidth=25\.0 but the run uses 10\.0"):
        signature.check_preprocessing(ExtractionSettings())
