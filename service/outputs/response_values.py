"""The sums of diameters a RECIST 1.1 assessment reports, each with its code and unit: one list
for both outputs, so the SR's group and the FHIR Observation's components say the same things in
the same order (docs/method.md 5.3, docs/fhir.md)."""

from __future__ import annotations

from pydicom.sr.coding import Code

from service.comparison import ResponseAssessment
from service.model import Metric
from service.outputs import codes


def sum_of_diameters_values(response: ResponseAssessment) -> list[tuple[Code, Metric, Code]]:
    """(concept, value, unit): the sum now, at baseline and at the nadir, and its changes."""
    return [
        (codes.SOD, response.sod_mm, codes.UNIT_MM),
        (codes.SOD_BASELINE, response.baseline_sod_mm, codes.UNIT_MM),
        (codes.SOD_NADIR, response.nadir_sod_mm, codes.UNIT_MM),
        (codes.SOD_PCT_BASELINE, response.percent_vs_baseline, codes.UNIT_PERCENT),
        (codes.SOD_PCT_NADIR, response.percent_vs_nadir, codes.UNIT_PERCENT),
        (codes.SOD_MM_NADIR, response.mm_vs_nadir, codes.UNIT_MM),
    ]
