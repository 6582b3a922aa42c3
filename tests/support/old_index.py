"""An index file as the release before this one wrote it (study order, none of the columns added
since: priors_unavailable_since, files_removed_at), for tests of reading and upgrading it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

STUDIES_OF_THE_RELEASE_BEFORE = (
    "CREATE TABLE studies (study_instance_uid TEXT PRIMARY KEY, state TEXT NOT NULL, waiting_since REAL"
    " NOT NULL, last_received_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, generation INTEGER"
    " NOT NULL DEFAULT 0, claimed_generation INTEGER NOT NULL DEFAULT -1, error TEXT, result TEXT,"
    " updated_at REAL NOT NULL, patient_key TEXT NOT NULL DEFAULT '', study_datetime TEXT NOT NULL"
    " DEFAULT '');"
)


def write_index_of_the_release_before(path: Path, *rows: str) -> None:
    """The studies table of the release before at `path`, with `rows` (INSERT statements)."""
    with closing(sqlite3.connect(path)) as old, old:
        old.executescript(STUDIES_OF_THE_RELEASE_BEFORE + "".join(f"{row};" for row in rows))
