"""Errors that name what is wrong with an input, never who it belongs to.

Messages end up in logs, in the index and in answers to users, so they carry neither patient
identifiers nor UIDs (a UID can identify the patient's study): they name instances, series and
Frames of Reference by role, Instance Number or position, and the UIDs go to the DEBUG log.
"""


class RadiomicsCdsError(Exception):
    """Base of every error this service raises on purpose."""


class InputError(RadiomicsCdsError):
    """An input (file, series, contour set) that cannot be used as it is; the study fails."""


class SeriesError(InputError):
    """A CT series that does not form a valid volume (tilt, gap, mixed series, ...)."""


class ContourError(InputError):
    """An RTSTRUCT or SEG that cannot be placed on the CT (e.g. Frame of Reference mismatch)."""


class FrameOfReferenceMismatch(ContourError):
    """The contours are in a Frame of Reference that no received CT series shares."""


class SignatureError(RadiomicsCdsError):
    """A signature file that is invalid or does not fit the run's settings."""


class ConfigError(RadiomicsCdsError):
    """An invalid configuration value; raised at start-up."""


class InstanceBudgetError(InputError):
    """A header claims what its file does not hold, or more than the limits allow
    (service.dicom_limits).

    `reason` is one of dicom_limits' OVER_LIMIT, INCONSISTENT, TRUNCATED (a bounded metric label).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnusableInstance(RadiomicsCdsError):
    """A received instance that cannot be indexed; the C-STORE is refused, so nothing is lost.
    `reason` is the rcds_instances_rejected_total label."""

    def __init__(self, message: str, reason: str = "missing_attributes") -> None:
        super().__init__(message)
        self.reason = reason


class LesionTooLarge(InputError):
    """A lesion crop exceeds the scorer's maximum message size: the study fails, saying so."""


class DeliveryError(RadiomicsCdsError):
    """A destination did not take an output; `permanent` when retrying cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ScorerError(RadiomicsCdsError):
    """The scorer did not score: `code` is the radiomics_cds.v1 status name, `details` its words.

    The worker sees only these, whichever scorer it has (gRPC or in-process), so no grpc type
    reaches it; the message, "CODE: details", is what the study's failure reason shows.
    """

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class ScorerUnavailable(ScorerError):
    """The scorer could not be reached or did not answer in time (restarting, scaling): retry later."""


class ScorerRefused(ScorerError):
    """The scorer answered with an error (malformed request, signature precondition, a bug):
    the same request would be refused again, so the study fails."""


class PriorSourceError(RadiomicsCdsError):
    """A prior source (DICOMweb, DIMSE) could not be asked or answered with a failure.

    The message names the source and what failed (connection refused, C-FIND refused, HTTP
    status), never the query keys: they are patient data.
    """


class PriorNotHeld(PriorSourceError):
    """The source answered, and does not hold (all of) what was asked: HTTP 404 or 410, a series
    of which it sends no instance, fewer instances than asked for. Unlike a source that could
    not be asked, asking again will not help."""
