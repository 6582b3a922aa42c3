"""Signature files: validation that names the field, the linear score, preprocessing checks."""

import copy
import json

import pytest

from service.errors import SignatureError
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature, parse_signature


@pytest.fixture
def document():
    from importlib import resources
    return json.loads(resources.files("service.signatures").joinpath("cd8-sun2018.json").read_text())


def test_shipped_cd8_signature_has_the_published_structure_and_signs():
    signature = load_signature()
    assert signature.status == "uncalibrated"
    by_feature = {(v.region, v.feature): v.coefficient for v in signature.variables}
    # Sun 2018: core min intensity (-), core SRHGE (-), ring SRLGE, LGRE, LRLGE (+)
    assert by_feature[("core", "stat_min")] < 0
    assert by_feature[("core", "rlm_srhge_3D_avg")] < 0
    for feature in ("rlm_srlge_3D_avg", "rlm_lgre_3D_avg", "rlm_lrlge_3D_avg"):
        assert by_feature[("ring", feature)] > 0
    kinds = [term.kind for term in signature.categorical]
    assert kinds.count("location_class") == 2 and kinds.count("kvp") == 1
    assert signature.default_cutoff in signature.cutoffs


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
    assert sum(contributions.values()) + signature.intercept == pytest.approx(score)


def test_normalisation_clips_to_unit_range(document):
    signature = parse_signature(document)
    variable = signature.variables[0]
    assert variable.normalise(variable.maximum * 10 + 1000) == 1.0
    assert variable.normalise(variable.minimum - 1000) == 0.0


@pytest.mark.parametrize("path, value, message", [
    (("status",), "experimental", "field 'status'"),
    (("variables", 1, "region"), "peritumoral", "variables[1]: field 'region'"),
    (("variables", 0, "normalisation", "max"), -2000.0, "'max' must be greater"),
    (("default_cutoff",), "optimised", "default_cutoff"),
    (("intercept",), "2.3", "field 'intercept'"),
])
def test_invalid_documents_name_the_field(document, path, value, message):
    broken = copy.deepcopy(document)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SignatureError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_signature(broken)


def test_missing_field_is_named(document):
    del document["variables"][2]["coefficient"]
    with pytest.raises(SignatureError, match=r"variables\[2\]: missing field 'coefficient'"):
        parse_signature(document)


def test_scoring_refuses_other_preprocessing():
    signature = load_signature()
    signature.check_preprocessing(ExtractionSettings())
    with pytest.raises(SignatureError, match="binWidth"):
        signature.check_preprocessing(ExtractionSettings(binWidth=25.0))


def test_installing_another_signature_is_a_file(tmp_path, document):
    document.update(id="site-cd8", version="2.0", status="validated", intercept=1.0)
    path = tmp_path / "site.json"
    path.write_text(json.dumps(document))
    signature = load_signature(path)
    assert (signature.id, signature.version, signature.status, signature.intercept) == ("site-cd8", "2.0", "validated", 1.0)
    with pytest.raises(SignatureError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_signature(tmp_path / "bad.json")
