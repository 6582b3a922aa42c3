"""What the commands that work beside a running service (status, redeliver, rescore) share: the
check that var_dir holds the service's files, and the way a study is named in what they print."""

from __future__ import annotations

from pathlib import Path

from service.errors import ConfigError
from service.ingest.spool import study_key
from service.observability import uid_token


def service_file(path: Path, what: str) -> Path:
    """`path`, the service's `what` (its index, its outbox), or ConfigError when there is no such
    file: a mistyped var_dir must not look like an empty service, nor have a database created
    in it by a command meant to read or repair one."""
    if not path.is_file():
        raise ConfigError(f"no {what} at {path}: is var_dir (RCDS_VAR_DIR, --config) the service's?")
    return path


def shown_uid(study_instance_uid: str, show_uids: bool) -> str:
    """The token the log shows for a Study Instance UID, or the UID itself when `show_uids`: a
    Study Instance UID can identify the patient."""
    return study_instance_uid if show_uids else uid_token(study_instance_uid)


def study_name(study_instance_uid: str, show_uids: bool) -> str:
    """A study as `status` prints it: the log's key (service.ingest.spool.study_key), then its
    UID as shown_uid shows it."""
    return f"{study_key(study_instance_uid)}  {shown_uid(study_instance_uid, show_uids)}"
