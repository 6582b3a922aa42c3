"""Lesion signatures: versioned data files (docs/method.md section 3), validated at load.

A signature is a linear model: intercept + sum(coefficient x normalised feature) +
sum(coefficient x indicator). Features are min-max normalised with the training set's bounds
(optionally clipped to [0, 1]); indicators are 1 when a categorical term matches (location class,
kVp). Installing another signature is a configuration change: point `signature_file` at it.

The format is the JSON Schema `service/signatures/signature.schema.json` (docs/signatures.md).
A document is validated against it first; then come the rules a schema cannot express (bounds in
order, the default cut-off exists, unique names, features this engine computes). Every error
names the file and the field, e.g. `site.json: variables[2].normalisation.max: ...`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from service.errors import SignatureError
from service.model import LocationClass, ScoreClass, SignatureStatus
from service.scoring.ibsi_names import feature_key, pyradiomics_feature
from service.scoring.settings import FEATURE_CLASSES, ExtractionSettings

DEFAULT_SIGNATURE = "cd8-sun2018.json"
SCHEMA_FILE = "signature.schema.json"
_MAX_SHOWN = 60  # characters of an offending value quoted in an error


@dataclass(frozen=True)
class Variable:
    name: str
    region: str
    feature: str
    minimum: float
    maximum: float
    clip: bool
    coefficient: float

    def normalise(self, value: float) -> float:
        scaled = (value - self.minimum) / (self.maximum - self.minimum)
        return min(max(scaled, 0.0), 1.0) if self.clip else scaled


@dataclass(frozen=True)
class CategoricalTerm:
    name: str
    kind: str  # location_class | kvp
    equals: str | float
    coefficient: float

    def indicator(self, location_class: LocationClass, kvp: float | None) -> float:
        if self.kind == "location_class":
            return 1.0 if location_class == self.equals else 0.0
        return 1.0 if kvp is not None and abs(kvp - float(self.equals)) < 0.5 else 0.0


@dataclass(frozen=True)
class Signature:
    id: str
    version: str
    status: SignatureStatus
    status_note: str
    citation: str
    preprocessing: dict[str, Any]
    variables: tuple[Variable, ...]
    categorical: tuple[CategoricalTerm, ...]
    intercept: float
    cutoffs: dict[str, float]
    default_cutoff: str

    def check_preprocessing(self, settings: ExtractionSettings) -> None:
        """Refuse to score under settings other than those the signature was trained with."""
        actual = settings.as_dict()
        for key, expected in self.preprocessing.items():
            if key not in actual:
                raise SignatureError(f"signature {self.id}: preprocessing key {key!r} is unknown to this engine")
            value = actual[key]
            same = (
                list(value) == list(expected) if isinstance(expected, list) and isinstance(value, (list, tuple))
                else value == expected
            )
            if not same:
                raise SignatureError(
                    f"signature {self.id} requires {key}={expected!r} but the run uses {value!r}; "
                    "change the extraction settings or install a signature trained with them"
                )

    def score(
        self, features: dict[str, dict[str, float]], location_class: LocationClass, kvp: float | None
    ) -> tuple[float, dict[str, float]]:
        """The score and each term's contribution (coefficient x normalised value or indicator)."""
        contributions: dict[str, float] = {}
        for variable in self.variables:
            try:
                raw = features[variable.region][variable.feature]
            except KeyError as missing:
                raise SignatureError(
                    f"signature {self.id}: feature {variable.feature} of region {variable.region} was not computed"
                ) from missing
            contributions[variable.name] = variable.coefficient * variable.normalise(raw)
        for term in self.categorical:
            contributions[term.name] = term.coefficient * term.indicator(location_class, kvp)
        return self.intercept + sum(contributions.values()), contributions

    def classify(self, score: float, cutoff_name: str | None = None) -> ScoreClass:
        """HIGH when the score is at or above the named cut-off, else LOW."""
        return ScoreClass.HIGH if score >= self.cutoffs[cutoff_name or self.default_cutoff] else ScoreClass.LOW


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    """The signature format (JSON Schema draft 2020-12), shipped beside the CD8 signature."""
    schema = json.loads(resources.files("service.signatures").joinpath(SCHEMA_FILE).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _path(parts: Any) -> str:
    """JSON-path-like field name: variables[2].normalisation.max."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _shown(value: Any) -> str:
    try:
        text = repr(value) if isinstance(value, (dict, list)) else json.dumps(value)
    except TypeError:  # a caller's Python object, not parsed JSON
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


_JSON_TYPES = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false",
               "array": "an array", "object": "an object", "null": "null"}


def _problems(error: jsonschema.ValidationError) -> list[str]:
    """A schema violation as '<field path>: <what is wrong>' (one per missing or unknown field)."""
    where = list(error.absolute_path)
    # A validator's errors always carry these (the stubs also allow jsonschema's "unset" sentinel).
    expected: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if error.validator == "required":
        missing = [name for name in expected if name not in instance]
        return [f"{_path([*where, name])}: missing required field" for name in missing]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        extra = sorted(name for name in instance if name not in known)
        return [f"{_path([*where, name])}: unknown field (not part of the signature format)" for name in extra]
    if error.validator == "type":
        kinds = [expected] if isinstance(expected, str) else expected
        wanted = " or ".join(_JSON_TYPES.get(kind, kind) for kind in kinds)
        return [f"{_path(where)}: must be {wanted}, got {_shown(instance)}"]
    if error.validator == "enum":
        choices = ", ".join(json.dumps(choice) for choice in expected)
        return [f"{_path(where)}: must be one of {choices}, got {_shown(instance)}"]
    if error.validator == "minItems" and expected == 1 and not instance:
        return [f"{_path(where)}: must not be empty"]
    return [f"{_path(where)}: {error.message}"]


def _path_order(error: jsonschema.ValidationError) -> list[tuple[int, int, str]]:
    return [(0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in error.absolute_path]


def _schema_problems(data: Any) -> list[str]:
    errors = sorted(_validator().iter_errors(data), key=_path_order)
    return list(dict.fromkeys(problem for error in errors for problem in _problems(error)))


def _feature_problem(feature: str, region: str, force_2d: bool | None) -> str | None:
    """Why this engine cannot give `feature` for `region` (None: it can)."""
    from service.scoring.features import current_feature_names  # pyradiomics: import only when needed

    try:
        feature_class, name = pyradiomics_feature(feature)
    except KeyError:
        feature_class, name = "", ""
    if feature_class not in FEATURE_CLASSES or name not in current_feature_names(feature_class):
        return (f"{feature!r} is not a feature this engine computes (IBSI tags such as 'stat_min' or "
                "'rlm_srhge_3D_avg', else '<pyradiomics class>_<Feature>')")
    if feature_class == "shape" and region != "core":
        return f"{feature!r} is a shape feature, computed for the core region only"
    spellings = {feature_key(feature_class, name, flag) for flag in ((False, True) if force_2d is None else (force_2d,))}
    if feature not in spellings:
        return f"this engine names the feature {' or '.join(map(repr, sorted(spellings)))}, not {feature!r}" + (
            f" (preprocessing.force2D is {json.dumps(force_2d)})" if force_2d is not None else ""
        )
    return None


def _semantic_problems(data: dict[str, Any]) -> list[str]:
    """The rules of the format that JSON Schema cannot express; `data` is schema-valid."""
    problems: list[str] = []
    force_2d = data["preprocessing"].get("force2D")
    terms: dict[str, str] = {}
    labelled = [(f"variables[{i}]", v) for i, v in enumerate(data["variables"])]
    labelled += [(f"categorical[{i}]", c) for i, c in enumerate(data.get("categorical", []))]
    for where, term in labelled:
        if term["name"] in terms:
            problems.append(f"{where}.name: duplicate name {term['name']!r} (also {terms[term['name']]}.name)")
        terms.setdefault(term["name"], where)
    for i, variable in enumerate(data["variables"]):
        bounds = variable["normalisation"]
        if bounds["max"] <= bounds["min"]:
            problems.append(f"variables[{i}].normalisation.max: must be greater than min "
                            f"(min {bounds['min']!r}, max {bounds['max']!r})")
        reason = _feature_problem(variable["feature"], variable["region"], force_2d)
        if reason:
            problems.append(f"variables[{i}].feature: {reason}")
    cutoffs: dict[str, int] = {}
    for i, cutoff in enumerate(data["cutoffs"]):
        if cutoff["name"] in cutoffs:
            problems.append(f"cutoffs[{i}].name: duplicate cut-off name {cutoff['name']!r} "
                            f"(also cutoffs[{cutoffs[cutoff['name']]}].name)")
        cutoffs.setdefault(cutoff["name"], i)
    if data["default_cutoff"] not in cutoffs:
        problems.append(f"default_cutoff: names {data['default_cutoff']!r}, which is not a cut-off "
                        f"(cut-offs: {', '.join(repr(name) for name in cutoffs)})")
    return problems


def parse_signature(data: dict[str, Any], origin: str = "signature") -> Signature:
    """Validate a signature document (schema, then semantic rules); errors name the field."""
    problems = _schema_problems(data) or _semantic_problems(data)
    if problems:
        raise SignatureError(f"{origin}: " + "; ".join(problems))
    return Signature(
        id=data["id"],
        version=data["version"],
        status=SignatureStatus(data["status"]),
        status_note=data.get("status_note", data["status"]),
        citation=data["citation"],
        preprocessing=dict(data["preprocessing"]),
        variables=tuple(
            Variable(
                name=v["name"],
                region=v["region"],
                feature=v["feature"],
                minimum=float(v["normalisation"]["min"]),
                maximum=float(v["normalisation"]["max"]),
                clip=v["normalisation"].get("clip", True),
                coefficient=float(v["coefficient"]),
            )
            for v in data["variables"]
        ),
        categorical=tuple(
            CategoricalTerm(name=c["name"], kind=c["kind"], equals=c["equals"], coefficient=float(c["coefficient"]))
            for c in data.get("categorical", [])
        ),
        intercept=float(data["intercept"]),
        cutoffs={c["name"]: float(c["value"]) for c in data["cutoffs"]},
        default_cutoff=data["default_cutoff"],
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_signature(path: Path | None = None) -> Signature:
    """Load a signature file, or the shipped CD8 signature when `path` is None."""
    if path is None:
        text = resources.files("service.signatures").joinpath(DEFAULT_SIGNATURE).read_text()
        origin = DEFAULT_SIGNATURE
    else:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise SignatureError(f"cannot read signature file {path}: {error.strerror}") from error
        origin = Path(path).name
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise SignatureError(f"{origin}: not valid JSON ({error.msg} at line {error.lineno})") from error
    except ValueError as error:  # NaN / Infinity: Python's json accepts them, JSON does not
        raise SignatureError(f"{origin}: not valid JSON ({error})") from error
    return parse_signature(data, origin)
