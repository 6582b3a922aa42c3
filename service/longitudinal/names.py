"""ROI and segment names compared across studies (docs/method.md 5.1).

Readers rename lesions between time points ("Liver met 1 BL", "liver_met_1_FU2"), so names are
compared after normalisation: case-folded, separators (space, underscore, hyphen) collapsed
into one space, and time-point tokens removed by a configurable pattern.
"""

from __future__ import annotations

import re

DEFAULT_TIMEPOINT_TOKENS = r"bl|baseline|fu\d*|follow ?up\d*"
"""Whole words dropped from names. Deliberately not `t\\d+`: T1, T2 are target labels."""

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise_name(name: str, timepoint_tokens: str = DEFAULT_TIMEPOINT_TOKENS) -> str:
    """The comparable form of a name: "Liver_Met-1 BL" -> "liver met 1"."""
    words = _SEPARATORS.sub(" ", name.casefold()).strip()
    tokens = re.compile(rf"(?<!\S)(?:{timepoint_tokens})(?!\S)")
    return " ".join(tokens.sub(" ", words).split())
