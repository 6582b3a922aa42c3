"""Priors: our earlier TID 1500 SRs of the same patient, pulled from PACS (the source of truth).

Any ingest replica can resolve a study's priors on its own: the SRs are found and fetched from
PACS (DICOMweb, else DIMSE C-FIND + C-GET), never pushed to us, so nothing is shared between
pods and fetched priors never enter the scoring queue. A single node without PACS query rights
(or the demo) can read them from a directory instead (files.py, e.g. its own outbox).
`resolve_priors` is the entry point; it never raises for an unreachable PACS but says
"priors unavailable" with the reason.
"""

from service.priors.cache import PriorCache
from service.priors.providers import build_providers
from service.priors.reading import PriorLesion, PriorReport, feature_key, read_prior_report
from service.priors.reconcile import LaterStudies, stale_later_studies
from service.priors.resolve import PriorsOutcome, resolve_priors
from service.priors.source import PatientQuery, PriorProvider, SrLocation

__all__ = [
    "LaterStudies", "PatientQuery", "PriorCache", "PriorLesion", "PriorProvider", "PriorReport", "PriorsOutcome", "SrLocation",
    "build_providers", "feature_key", "read_prior_report", "resolve_priors",
    "stale_later_studies",
]
