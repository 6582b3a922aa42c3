"""Which mapping relates a prior study's Frame of Reference to the current one (docs/method.md
section 5): the identity for the same frame, else a Spatial Registration object, else a rigid
registration of the prior CT to the current CT, else none (matching by tracking UID and name
only, and the follow-up says so).

The prior CT is asked for only when it is needed, through a callable the caller supplies (the
`score --prior-ct` directories; a PACS fetch in the service), so nothing is read or fetched for
a study in the same frame or with a Spatial Registration object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from service.errors import PriorSourceError
from service.longitudinal.frames import FrameMapping
from service.model import CtSeries
from service.observability import redact_uids
from service.priors.reading import PriorReport
from service.spatial_registration import registration_mapping

PriorCtSource = Callable[[str, str | None], CtSeries | None]
"""(prior Study Instance UID, its CT Series Instance UID if known) -> the prior CT, or None;
PriorSourceError says why it could not be had (the note then says so)."""

NO_REGISTRATION = ("the prior study is in another frame of reference and no registration relates them: "
                   "lesions matched by tracking UID and name only")
PRIOR_CT_OTHER_FRAME = "the prior CT supplied is not in the prior report's frame of reference"


@dataclass(frozen=True)
class FrameSources:
    """What can relate a prior frame to the current one: the current CT, the Spatial
    Registration objects at hand, and a source of prior CTs."""

    current_ct: CtSeries | None = None
    spatial_registrations: Sequence[Dataset] = ()
    prior_ct: PriorCtSource | None = None


def prior_mapping(sources: FrameSources, current_frame: str,
                  report: PriorReport) -> tuple[FrameMapping | None, str | None]:
    """(mapping prior -> current or None, a note for the outputs or None)."""
    prior_frame = report.frame_of_reference_uid
    if prior_frame is None or prior_frame == current_frame:
        return FrameMapping.identity(), None
    registered = registration_mapping(sources.spatial_registrations, prior_frame, current_frame)
    if registered is not None:
        return registered, "prior frame of reference mapped by a Spatial Registration object"
    try:
        prior_ct = sources.prior_ct(report.study_instance_uid, report.ct_series_instance_uid) \
            if sources.prior_ct is not None and sources.current_ct is not None else None
    except PriorSourceError as error:
        # The note goes into the SR, the Bundle and the page: a UID in the reason (a sender's
        # instance, a series asked for) is shown as the log's token for it.
        return None, f"{NO_REGISTRATION} (prior CT not retrieved: {redact_uids(str(error))})"
    if prior_ct is None or sources.current_ct is None:
        return None, NO_REGISTRATION
    if prior_ct.frame_of_reference_uid != prior_frame:
        return None, f"{PRIOR_CT_OTHER_FRAME}: {NO_REGISTRATION}"
    # Imported here: SimpleITK stays out of the processes that never register (the worker's import).
    from service.registration import register_prior_ct

    outcome = register_prior_ct(sources.current_ct, prior_ct)
    if outcome.mapping is None:
        return None, f"{outcome.reason}: lesions matched by tracking UID and name only"
    return outcome.mapping, f"prior frame of reference mapped by {outcome.mapping.registration}"
