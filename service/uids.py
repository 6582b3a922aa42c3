"""Deterministic UIDs: the same inputs give the same UID on any machine, at any time."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://radiomics-cds.org/dicom/uid")


def derived_uid(role: str, key: Sequence[str]) -> str:
    """A 2.25 UID from a name-based UUID of `role` and `key`: same inputs, same UID anywhere.

    "2.25.<UUID as integer>" is the registration-free UID form of PS3.5 B.2. The UUID is
    version 5 (SHA-1 of the JSON-encoded inputs, unambiguous whatever the strings contain).
    Not pydicom's generate_uid: with prefix=None it ignores entropy_srcs and returns a
    random UUID4 UID.
    """
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, json.dumps([role, *key])).int}"
