"""Studies scored while their priors were unavailable: recorded, and scored again once a prior
source answers.

When no prior source answers (PACS down, the network), a study is still scored and its outputs
say "priors unavailable: <reason>": the tumour board has its scores without the response
assessment (RECIST, iRECIST, lesion tracking). `PriorsWatch` tells the worker that this
happened, and the worker records it in the index (StudyIndex.finish, priors_unavailable).
"""

from __future__ import annotations

from service.model import StudyInfo
from service.priors import PriorsOutcome
from service.priors.resolve import PriorLookup


class PriorsWatch:
    """The scored study's prior lookup (`lookup`; None: priors are off), watched: `unavailable`
    says whether it was made and no source answered."""

    def __init__(self, lookup: PriorLookup | None) -> None:
        self.unavailable = False
        self.lookup = None if lookup is None else self._watching(lookup)

    def _watching(self, lookup: PriorLookup) -> PriorLookup:
        def watched(study: StudyInfo) -> PriorsOutcome:
            outcome = lookup(study)
            self.unavailable = outcome.unavailable is not None
            return outcome
        return watched
