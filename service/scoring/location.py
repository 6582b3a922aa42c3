"""Location classes of the CD8 score (docs/method.md section 1), and where each came from.

Order of precedence: an explicit site mapping in the configuration (ROI name -> class), the SEG
segment's anatomic region code, keyword rules on the ROI name, else `other`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from service.model import CodedConcept

LOCATION_CLASSES = ("adenopathy", "head_and_neck", "lung", "liver", "other")

# SNOMED CT body structures (SEG AnatomicRegionSequence, scheme SCT) -> class.
_SNOMED_REGIONS = {
    "59441001": "adenopathy",  # Lymph node structure
    "39607008": "lung",  # Lung structure
    "10200004": "liver",  # Liver structure
    "774007": "head_and_neck",  # Structure of head and/or neck
    "69536005": "head_and_neck",  # Head structure
    "45048000": "head_and_neck",  # Neck structure
}

DEFAULT_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"\b(ln|nodes?|nodal|lymph\w*|adenopath\w*)\b", "adenopathy"),
    (r"lung|pulm|\bpul\b", "lung"),
    (r"liver|hepat", "liver"),
    (r"head|neck|\bhn\b|h&n|oro|laryn|pharyn|parotid|tongue", "head_and_neck"),
)


@dataclass(frozen=True)
class LocationRules:
    """Configurable: exact ROI-name mapping first, then regex rules (case-insensitive)."""

    site_mapping: dict[str, str] = field(default_factory=dict)
    name_rules: tuple[tuple[str, str], ...] = DEFAULT_NAME_RULES

    def classify(self, name: str, anatomic_region: CodedConcept | None) -> tuple[str, str]:
        """(location class, source) for a lesion."""
        if name in self.site_mapping:
            return self.site_mapping[name], "configuration"
        if anatomic_region is not None and anatomic_region.scheme in ("SCT", "SRT"):
            region_class = _SNOMED_REGIONS.get(anatomic_region.value)
            if region_class is not None:
                return region_class, "seg_anatomic_region"
        lowered = name.lower().replace("_", " ")
        for pattern, location in self.name_rules:
            if re.search(pattern, lowered):
                return location, "roi_name"
        return "other", "default"
