"""Errors that name what is wrong with an input, never who it belongs to.

Messages end up in logs, in the index and in answers to users, so they carry UIDs at most,
never patient identifiers.
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


class PriorSourceError(RadiomicsCdsError):
    """A prior source (DICOMweb, DIMSE) could not be asked or answered with a failure.

    The message names the source and what failed (connection refused, C-FIND refused, HTTP
    status), never the query keys: they are patient data.
    """
