"""Location classes of the CD8 score (docs/method.md section 1), and where each came from.

Order of precedence: an explicit site mapping in the configuration (ROI name -> class), the SEG
segment's anatomic region code, keyword rules on the ROI name, else `other`. Part of the
foundation: the configuration validates its rules against these classes at start, and the scorer
applies them, so neither depends on the other for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.sr._snomed_dict import mapping as SNOMED_MAPPING
from pydicom.sr.coding import Code

from service.model import CodedConcept, LocationClass, LocationSource

# SNOMED CT body structures (SEG AnatomicRegionSequence) -> class. pydicom's Code compares an
# SRT code (the legacy SNOMED-RT form, e.g. T-62000 for the liver, still written by many
# producers) equal to its SCT equivalent.
_SNOMED_REGIONS = (
    (Code("59441001", "SCT", "Lymph node structure"), LocationClass.ADENOPATHY),
    (Code("39607008", "SCT", "Lung structure"), LocationClass.LUNG),
    (Code("10200004", "SCT", "Liver structure"), LocationClass.LIVER),
    (Code("774007", "SCT", "Structure of head and/or neck"), LocationClass.HEAD_AND_NECK),
    (Code("69536005", "SCT", "Head structure"), LocationClass.HEAD_AND_NECK),
    (Code("45048000", "SCT", "Neck structure"), LocationClass.HEAD_AND_NECK),
)

DEFAULT_NAME_RULES: tuple[tuple[str, LocationClass], ...] = (
    (r"\b(ln|nodes?|nodal|lymph\w*|adenopath\w*)\b", LocationClass.ADENOPATHY),
    (r"lung|pulm|\bpul\b", LocationClass.LUNG),
    (r"liver|hepat", LocationClass.LIVER),
    (r"head|neck|\bhn\b|h&n|oro|laryn|pharyn|parotid|tongue", LocationClass.HEAD_AND_NECK),
)


@dataclass(frozen=True)
class LocationRules:
    """Configurable: exact ROI-name mapping first, then regex rules.

    A rule matches when its pattern is found, ignoring case, in the ROI name as written or in
    the name with underscores read as spaces: the built-in rules' word boundaries then separate
    LN_1's parts (an underscore is a word character), and a configured pattern that names the
    underscore itself (ln_) or capitals (GTV_LUNG) still matches the name as written.
    """

    site_mapping: dict[str, LocationClass] = field(default_factory=dict)
    name_rules: tuple[tuple[str, LocationClass], ...] = DEFAULT_NAME_RULES

    def classify(self, name: str, anatomic_region: CodedConcept | None) -> tuple[LocationClass, LocationSource]:
        """(location class, source) for a lesion."""
        if name in self.site_mapping:
            return self.site_mapping[name], LocationSource.CONFIGURATION
        region_class = anatomic_region_class(anatomic_region) if anatomic_region is not None else None
        if region_class is not None:
            return region_class, LocationSource.SEG_ANATOMIC_REGION
        spaced = name.replace("_", " ")
        for pattern, location in self.name_rules:
            if re.search(pattern, name, re.IGNORECASE) or re.search(pattern, spaced, re.IGNORECASE):
                return location, LocationSource.ROI_NAME
        return LocationClass.OTHER, LocationSource.DEFAULT


def organ_key(location_class: LocationClass, region: CodedConcept | None) -> str | None:
    """The organ a lesion counts towards in RECIST 1.1's "at most 2 targets per organ", when its
    SEG segment's anatomic region names one its location class does not: the region's code
    (scheme and value, without modifiers, so that left and right of a paired organ are one
    organ, as the EORTC RECIST FAQ "Paired organs" counts them). None: the location class is
    the organ (a class names one organ, or nothing finer is known): "other" would otherwise put
    a kidney, a bone and an adrenal lesion in one organ and allow two targets among them."""
    if location_class is not LocationClass.OTHER or region is None or not region.value or not region.scheme:
        return None
    if region.scheme == "SRT":
        # A legacy SNOMED-RT code (SRT T-71000) is the SNOMED CT concept it stands for (SCT
        # 64033007), by the table pydicom's own Code equality uses; an SCT id labelled SRT is one.
        value = region.value if region.value.isdigit() else SNOMED_MAPPING["SRT"].get(region.value)
        if value is not None:
            return f"SCT:{value}"
    return f"{region.scheme}:{region.value}"


def anatomic_region_class(region: CodedConcept) -> LocationClass | None:
    """The location class a SNOMED CT body structure names, if any: for a SEG segment's code
    here, and for the finding site of an earlier SR (service.priors.reading)."""
    if region.scheme not in ("SCT", "SRT"):
        return None
    # An SCT concept id labelled SRT (some producers do) is still that concept.
    scheme = "SCT" if region.scheme == "SRT" and region.value.isdigit() else region.scheme
    code = Code(region.value, scheme, region.meaning)
    return next((location for known, location in _SNOMED_REGIONS if known == code), None)
