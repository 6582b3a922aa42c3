"""Our SR's TID 1411 groups of a lesion, as a test reads them with highdicom.

Each lesion has a core group (the contoured lesion: its sizes, score, statements, centroid and
core features) and, when it has ring features, a peritumoral ring group with the same Tracking
UID; the region is the group's Measurement Method (99RCDS RGNCORE / RGNRING).
"""

from __future__ import annotations

from typing import Any

import highdicom as hd

CORE, RING = "RGNCORE", "RGNRING"


def region_groups(report: hd.sr.MeasurementReport, region: str,
                  **filters: Any) -> list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    """The volumetric groups of `region` (CORE or RING); `filters` as highdicom's own."""
    return [group for group in report.get_volumetric_roi_measurement_groups(**filters)
            if group.method is not None and group.method.value == region]


def lesion_groups(report: hd.sr.MeasurementReport,
                  **filters: Any) -> list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    """One group per lesion: its core group."""
    return region_groups(report, CORE, **filters)
