"""Settings of the patient-level response rules (docs/method.md section 5.2), with their defaults.

RECIST 1.1 thresholds are the guideline's (Eisenhauer 2009); iRECIST's confirmation window is
Seymour 2017's 4-8 weeks with the EORTC FAQ's tolerance of about 2 days; 30.4375 days per month
is the mean Gregorian month, fixed here because Ferte's TGR code leaves the conversion open.
The borderline margin and the non-target volume proxy (+73 %, the volume equivalent of +20 % in
diameter, EORTC iRECIST FAQ) are decisions of this project, not guideline values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TargetSelection(StrEnum):
    ROUND_ROBIN_BY_ORGAN = "round_robin_by_organ"
    LARGEST_FIRST = "largest_first"


class NewLesionPolicy(StrEnum):
    COUNTS_AS_PD = "counts_as_pd"  # the default: the contours come from the clinical team
    FLAG_ONLY = "flag_only"


class SmallLesionPolicy(StrEnum):
    MEASURED = "measured"  # the default: the value as measured, flagged below small_lesion_mm
    RECIST_5MM_IF_BELOW = "recist_5mm_if_below"  # a non-nodal target below small_lesion_mm sums as 5 mm


class HpdDefinition(StrEnum):
    CHAMPIAT = "champiat"
    SAADA_BOUZID = "saada_bouzid"
    FERRARA = "ferrara"
    KAS = "kas"
    KATO = "kato"
    LO_RUSSO = "lo_russo"


@dataclass(frozen=True)
class RecistSettings:
    min_measurable_ld_mm: float = 10.0
    thick_slice_mm: float = 5.0  # above this, a non-nodal lesion must also reach 2 x slice thickness
    node_target_sa_mm: float = 15.0
    node_normal_sa_mm: float = 10.0
    max_targets: int = 5
    max_targets_per_organ: int = 2
    target_selection: TargetSelection = TargetSelection.ROUND_ROBIN_BY_ORGAN
    nodes_one_organ: bool = True
    target_name_regex: str = r"^T\d+"  # a site's designation by ROI name (case-insensitive)
    non_target_name_regex: str = r"^NT\d+"
    pr_pct: float = -30.0  # against baseline
    pd_pct: float = 20.0  # against the nadir ...
    pd_abs_mm: float = 5.0  # ... and at least this much
    nontarget_pd_volume_pct: float = 73.0  # automated proxy of "unequivocal" progression
    new_lesion_policy: NewLesionPolicy = NewLesionPolicy.COUNTS_AS_PD
    borderline_margin_pct: float = 2.0
    borderline_margin_mm: float = 1.0
    small_lesion_mm: float = 5.0  # the small_lesion_policy threshold
    small_lesion_policy: SmallLesionPolicy = SmallLesionPolicy.MEASURED
    baseline_max_days_before_start: int = 28  # flag only
    sd_min_days: int = 0  # the protocol's minimum interval for SD; flag only


@dataclass(frozen=True)
class IRecistSettings:
    confirm_min_days: int = 28
    confirm_max_days: int = 56
    confirm_tolerance_days: int = 2
    confirm_abs_mm: float = 5.0  # target sum (when a basis of the iUPD) or new-lesion-target sum, cumulative since iUPD
    volume_tolerance_pct: float = 10.0  # non-target / NLNT volume rise taken as "an increase"
    max_new_targets: int = 5
    max_new_targets_per_organ: int = 2


@dataclass(frozen=True)
class KineticsSettings:
    days_per_month: float = 30.4375
    hpd_definitions: tuple[HpdDefinition, ...] = (HpdDefinition.CHAMPIAT, HpdDefinition.SAADA_BOUZID,
                                                  HpdDefinition.FERRARA, HpdDefinition.KAS)
    champiat_ratio: float = 2.0
    saada_bouzid_ratio: float = 2.0
    ferrara_delta_tgr: float = 50.0
    kas_delta_tgr: float = 100.0
    responding_pct: float = -30.0  # lesion-level, dissociated and out-of-field response
    progressing_pct: float = 20.0
