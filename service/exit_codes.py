"""What a command's exit status means, and the error line a failed command prints."""

from __future__ import annotations

from enum import IntEnum

from pydicom.errors import InvalidDicomError

from service.errors import (ConfigError, DeliveryError, InputError, PriorSourceError, ScorerUnavailable,
                            SignatureError)


class ExitCode(IntEnum):
    """What a command's exit status tells a script or a supervisor (listed by --help and in the
    README): whether to fix the command line, the settings or the input, or to try again later."""

    OK = 0
    FAILED = 1
    USAGE = 2  # argparse's own
    CONFIG = 3
    INPUT = 4
    UNAVAILABLE = 5
    INTERRUPTED = 130  # the shell's convention for SIGINT


_EXIT_CODE_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "the command ran but not all its work succeeded (send: files refused; serve: the scorer died; "
                     "rescore: a study unknown, or one that scoring again cannot help)",
    ExitCode.USAGE: "the command line is wrong (unknown command or flag, missing or conflicting arguments)",
    ExitCode.CONFIG: "a setting, or a file a setting or flag names, is unusable (also: no permission to read or write "
                     "it, a read-only or full file system); or a port is taken",
    ExitCode.INPUT: "the input is unusable (a file missing or not DICOM, a series or contours that cannot be used)",
    ExitCode.UNAVAILABLE: "a peer could not be reached, refused us (association, TLS) or did not answer",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
_EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], ExitCode], ...] = (
    ((ConfigError, SignatureError), ExitCode.CONFIG),
    ((InputError, InvalidDicomError, FileNotFoundError, IsADirectoryError, NotADirectoryError), ExitCode.INPUT),
    ((DeliveryError, ScorerUnavailable, PriorSourceError, ConnectionError, TimeoutError), ExitCode.UNAVAILABLE),
    ((OSError,), ExitCode.CONFIG),  # any other: a file or directory we may not or cannot use (--out, var_dir)
)


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit status of a command stopped by `error`; FAILED for another error of ours."""
    return next((code for kinds, code in _EXIT_CODES if isinstance(error, kinds)), ExitCode.FAILED)


def error_text(error: BaseException) -> str:
    """The error line's text: an OSError as what failed and on which file (`cannot use /out/x.dcm:
    Permission denied`), not Python's `[Errno 13] ...`."""
    if isinstance(error, OSError) and error.strerror:
        return f"cannot use {error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


def exit_codes_help() -> str:
    lines = [f"  {code.value:<4} {code.name.lower()}: {_EXIT_CODE_MEANINGS[code]}" for code in ExitCode]
    return "exit status:\n" + "\n".join(lines)
