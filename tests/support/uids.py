"""The UIDs a set of DICOM objects carries, for tests that check a message names none of them."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset


def uids_of(datasets: Iterable[Dataset]) -> set[str]:
    """Every UID value (VR UI) of the datasets, in nested sequences and the file meta too."""
    uids: set[str] = set()
    for ds in datasets:
        meta = getattr(ds, "file_meta", None)
        for element in [*ds.iterall(), *(meta.iterall() if meta is not None else [])]:
            if element.VR == "UI" and element.value:
                values = element.value if element.VM > 1 else [element.value]
                uids |= {str(v) for v in values}
    return uids


def uids_in(text: str, uids: Iterable[str]) -> list[str]:
    """Those of `uids` that occur in `text`."""
    return sorted(uid for uid in uids if uid in text)
