"""A site's response rule settings (docs/method.md 5.3): a YAML file read once at start.

The file has up to three sections, `recist:`, `irecist:` and `kinetics:`, whose keys are the
field names of RecistSettings, IRecistSettings and KineticsSettings; what it leaves out keeps
its default. Anything the rules could not use as meant (an unknown key, a wrong type, a
threshold of the wrong sign, a window that closes before it opens, no hyperprogression
definition) stops the start with a ConfigError naming the key: a typo must not silently give
the guideline's defaults, and a report must never rest on an impossible rule.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from service.errors import ConfigError
from service.longitudinal.response_settings import IRecistSettings, KineticsSettings, RecistSettings


@dataclass(frozen=True)
class ResponseSettings:
    """The three rule sets, as one value that travels with the response's inputs."""

    recist: RecistSettings = RecistSettings()
    irecist: IRecistSettings = IRecistSettings()
    kinetics: KineticsSettings = KineticsSettings()

    def changed(self) -> list[tuple[str, str, str]]:
        """(section.key, value, default) of every setting that is not the default, in file order."""
        out = []
        for section in dataclasses.fields(self):
            current, default = getattr(self, section.name), getattr(ResponseSettings(), section.name)
            for item in dataclasses.fields(current):
                value, standard = getattr(current, item.name), getattr(default, item.name)
                if value != standard:
                    out.append((f"{section.name}.{item.name}", _text(value), _text(standard)))
        return out


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_text(item) for item in value)
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


# Allowed ranges, by section.key: what the rule needs to mean what it says.
_POSITIVE = {"recist.min_measurable_ld_mm", "recist.thick_slice_mm", "recist.node_target_sa_mm",
             "recist.node_normal_sa_mm", "recist.pd_pct", "recist.nontarget_pd_volume_pct",
             "kinetics.days_per_month", "kinetics.champiat_ratio", "kinetics.saada_bouzid_ratio",
             "kinetics.ferrara_delta_tgr", "kinetics.kas_delta_tgr", "kinetics.progressing_pct"}
_AT_LEAST_ONE = {"recist.max_targets", "recist.max_targets_per_organ", "irecist.max_new_targets",
                 "irecist.max_new_targets_per_organ", "irecist.confirm_min_days"}
_NON_NEGATIVE = {"recist.pd_abs_mm", "recist.borderline_margin_pct", "recist.borderline_margin_mm",
                 "recist.small_lesion_mm", "recist.baseline_max_days_before_start", "recist.sd_min_days",
                 "irecist.confirm_tolerance_days", "irecist.confirm_abs_mm",
                 "irecist.volume_tolerance_pct"}
_SHRINKAGE = {"recist.pr_pct", "kinetics.responding_pct"}  # a decrease: between -100 % and 0 %, exclusive
# (smaller, larger): the first may not exceed the second
_ORDERED = [("recist.node_normal_sa_mm", "recist.node_target_sa_mm"),
            ("recist.max_targets_per_organ", "recist.max_targets"),
            ("irecist.confirm_min_days", "irecist.confirm_max_days"),
            ("irecist.max_new_targets_per_organ", "irecist.max_new_targets")]


def read_response_settings(path: Path | None) -> ResponseSettings:
    """The settings `path` states over the defaults (no file: the defaults); ConfigError naming
    the key otherwise."""
    if path is None:
        return ResponseSettings()
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"response_settings_file: cannot read {path} ({error})") from None
    if not isinstance(document, Mapping):
        raise ConfigError("response_settings_file: expected sections recist, irecist, kinetics")
    sections = {item.name: item for item in dataclasses.fields(ResponseSettings)}
    unknown = sorted(str(name) for name in set(document) - set(sections))
    if unknown:
        raise ConfigError(f"response_settings_file: unknown sections {unknown}; use {sorted(sections)}")
    parsed = {name: _section(name, sections[name].default, document[name])
              for name in sections if name in document}
    settings = ResponseSettings(**parsed)
    _check_ranges(settings)
    return settings


def _section(name: str, default: Any, values: Any) -> Any:
    if values is None:
        return default
    if not isinstance(values, Mapping):
        raise ConfigError(f"response_settings_file: {name} must be a mapping of setting: value")
    hints = get_type_hints(type(default))
    unknown = sorted(str(key) for key in set(values) - set(hints))
    if unknown:
        raise ConfigError(f"response_settings_file: unknown settings {[f'{name}.{key}' for key in unknown]}")
    return dataclasses.replace(default, **{key: _value(f"{name}.{key}", hints[key], value)
                                           for key, value in values.items()})


def _value(key: str, kind: Any, value: Any) -> Any:
    """`value` as the field's type; YAML gives bool, int, float, str and lists, so exactly those."""
    def refuse(expected: str) -> ConfigError:
        return ConfigError(f"response_settings_file: {key} must be {expected}, not {value!r}")

    if kind is bool:
        if not isinstance(value, bool):
            raise refuse("true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("a whole number")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse("a number")
        return float(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _member(key, kind, value)
    if getattr(kind, "__origin__", None) is tuple:
        member = kind.__args__[0]
        if not isinstance(value, list) or not value:
            raise refuse(f"a non-empty list of {[m.value for m in member]}")
        items = tuple(_member(key, member, item) for item in value)
        if len(set(items)) != len(items):
            raise refuse("a list without repetitions")
        return items
    if not isinstance(value, str):  # the text settings are the ROI-name regular expressions
        raise refuse("text")
    try:
        re.compile(value)
    except re.error as error:
        raise ConfigError(f"response_settings_file: {key} is not a regular expression ({error})") from None
    return value


def _member(key: str, kind: type[enum.Enum], value: Any) -> Any:
    known = [member.value for member in kind]
    if value not in known:
        raise ConfigError(f"response_settings_file: {key} must be one of {known}, not {value!r}")
    return kind(value)


def _check_ranges(settings: ResponseSettings) -> None:
    def get(key: str) -> Any:
        section, name = key.split(".")
        return getattr(getattr(settings, section), name)

    checks: list[tuple[set[str], Callable[[Any], bool], str]] = [
        (_POSITIVE, lambda v: v > 0, "positive"),
        (_AT_LEAST_ONE, lambda v: v >= 1, "at least 1"),
        (_NON_NEGATIVE, lambda v: v >= 0, "zero or more"),
        (_SHRINKAGE, lambda v: -100 < v < 0, "between -100 and 0 (a decrease, in %)"),
    ]
    for keys, allowed, wording in checks:
        for key in sorted(keys):
            if not allowed(get(key)):
                raise ConfigError(f"response_settings_file: {key} must be {wording}, not {get(key)!r}")
    for smaller, larger in _ORDERED:
        if get(smaller) > get(larger):
            raise ConfigError(f"response_settings_file: {smaller} ({get(smaller)!r}) must not exceed "
                              f"{larger} ({get(larger)!r})")
