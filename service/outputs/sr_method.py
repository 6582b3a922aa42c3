"""A measurement group's own Measurement Method, with the relationship TID 1501 / 1411 give it.

highdicom 0.28 writes a group's Measurement Method (370129005, SCT) as CONTAINS; TID 1501 row 5
and TID 1411 row 7 make it HAS CONCEPT MOD, and PixelMed's TID 1500 validator reports CONTAINS
as an error. Our groups with a method (each lesion region, the RECIST 1.1 assessment) pass
through here after highdicom builds them.
"""

from __future__ import annotations

import highdicom as hd
from highdicom.sr.templates import Template
from pydicom.sr.coding import Code

MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")


def method_as_concept_modifier(group: Template) -> None:
    """Relate the group's Measurement Method item to the group by HAS CONCEPT MOD."""
    for item in group[0].ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == MEASUREMENT_METHOD.value:
            item.RelationshipType = hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD.value
