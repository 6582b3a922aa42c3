"""MIRP's feature names in our spelling (service.scoring.ibsi_names): IBSI tags with our
aggregation suffixes, without MIRP's discretisation tag. Shared by the MIRP agreement test and
the scoring benchmark's MIRP contender."""

from __future__ import annotations

import re


def our_name(mirp_name: str) -> str:
    """e.g. rlm_srhge_3d_avg_fbs_w10.0 -> rlm_srhge_3D_avg; stat_min -> stat_min."""
    name = re.sub(r"_fbs_w[0-9.]+$", "", mirp_name)
    name = name.replace("_d1_a0.0_3d", "_3D").replace("_d1_3d_avg", "_3D_avg")
    return name.replace("_3d_avg", "_3D_avg").replace("_3d", "_3D")
