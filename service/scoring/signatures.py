"""Lesion signatures: versioned data files (method.md section 3), validated at load.

A signature is a linear model: intercept + sum(coefficient x normalised feature) +
sum(coefficient x indicator). Features are min-max normalised with the training set's bounds
(optionally clipped to [0, 1]); indicators are 1 when a categorical term matches (location class,
kVp). Installing another signature is a configuration change: point `signature_file` at it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from service.errors import SignatureError
from service.scoring.settings import ExtractionSettings

DEFAULT_SIGNATURE = "cd8-sun2018.json"
_STATUSES = ("validated", "uncalibrated")
_CATEGORICAL_KINDS = ("location_class", "kvp")
_REGIONS = ("core", "ring")


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

    def indicator(self, location_class: str, kvp: float | None) -> float:
        if self.kind == "location_class":
            return 1.0 if location_class == self.equals else 0.0
        return 1.0 if kvp is not None and abs(kvp - float(self.equals)) < 0.5 else 0.0


@dataclass(frozen=True)
class Signature:
    id: str
    version: str
    status: str
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
        self, features: dict[str, dict[str, float]], location_class: str, kvp: float | None
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

    def classify(self, score: float, cutoff_name: str | None = None) -> str:
        """'high' when the score is at or above the named cut-off, else 'low'."""
        return "high" if score >= self.cutoffs[cutoff_name or self.default_cutoff] else "low"


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in data:
        raise SignatureError(f"{where}: missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SignatureError(f"{where}: field {name!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _variable(data: dict[str, Any], where: str) -> Variable:
    region = _field(data, "region", str, where)
    if region not in _REGIONS:
        raise SignatureError(f"{where}: field 'region' must be one of {_REGIONS}, got {region!r}")
    bounds = _field(data, "normalisation", dict, where)
    minimum = float(_field(bounds, "min", (int, float), f"{where}.normalisation"))
    maximum = float(_field(bounds, "max", (int, float), f"{where}.normalisation"))
    if maximum <= minimum:
        raise SignatureError(f"{where}.normalisation: 'max' must be greater than 'min'")
    return Variable(
        name=_field(data, "name", str, where),
        region=region,
        feature=_field(data, "feature", str, where),
        minimum=minimum,
        maximum=maximum,
        clip=bool(bounds.get("clip", True)),
        coefficient=float(_field(data, "coefficient", (int, float), where)),
    )


def _categorical(data: dict[str, Any], where: str) -> CategoricalTerm:
    kind = _field(data, "kind", str, where)
    if kind not in _CATEGORICAL_KINDS:
        raise SignatureError(f"{where}: field 'kind' must be one of {_CATEGORICAL_KINDS}, got {kind!r}")
    return CategoricalTerm(
        name=_field(data, "name", str, where),
        kind=kind,
        equals=_field(data, "equals", (str, int, float), where),
        coefficient=float(_field(data, "coefficient", (int, float), where)),
    )


def parse_signature(data: dict[str, Any], origin: str = "signature") -> Signature:
    """Validate a signature document; errors name the offending field."""
    status = _field(data, "status", str, origin)
    if status not in _STATUSES:
        raise SignatureError(f"{origin}: field 'status' must be one of {_STATUSES}, got {status!r}")
    cutoffs = {
        _field(c, "name", str, f"{origin}.cutoffs[{i}]"): float(_field(c, "value", (int, float), f"{origin}.cutoffs[{i}]"))
        for i, c in enumerate(_field(data, "cutoffs", list, origin))
    }
    default_cutoff = _field(data, "default_cutoff", str, origin)
    if default_cutoff not in cutoffs:
        raise SignatureError(f"{origin}: field 'default_cutoff' names {default_cutoff!r}, which is not a cut-off")
    return Signature(
        id=_field(data, "id", str, origin),
        version=_field(data, "version", str, origin),
        status=status,
        status_note=data.get("status_note", status),
        citation=_field(data, "citation", str, origin),
        preprocessing=_field(data, "preprocessing", dict, origin),
        variables=tuple(
            _variable(v, f"{origin}.variables[{i}]") for i, v in enumerate(_field(data, "variables", list, origin))
        ),
        categorical=tuple(
            _categorical(c, f"{origin}.categorical[{i}]") for i, c in enumerate(data.get("categorical", []))
        ),
        intercept=float(_field(data, "intercept", (int, float), origin)),
        cutoffs=cutoffs,
        default_cutoff=default_cutoff,
    )


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
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SignatureError(f"{origin}: not valid JSON ({error.msg} at line {error.lineno})") from error
    if not isinstance(data, dict):
        raise SignatureError(f"{origin}: the document must be a JSON object")
    return parse_signature(data, origin)
