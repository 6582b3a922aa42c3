"""DICOM header helpers every layer shares: typed attribute reads, and an instance's Frame of
Reference.

They live in the foundation because the listener (ingest), the size checks (dicom_limits) and
imaging all read headers the same way, and none of them may depend on another for it.

Typed reads: a malformed header is an input error naming the attribute. pydicom keeps a value
that does not parse as its VR as a string ("nan", "abc" or "1e999" in a DS or IS), gives a list
where one value was expected, gives None or "" for an empty element, and raises on access for a
binary value of the wrong length. Readers that called int() or float() on such values failed with
ValueError, TypeError or AttributeError, which the worker can only report as "internal error" and
the `score` command as a traceback. The readers get their values through HeaderReader instead:
converted, finite and of the expected number, or an error of the caller's type (SeriesError for a
CT, ContourError for contours) naming where and which attribute. Never the value itself: a misused
attribute could hold anything, patient data included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from service.errors import InputError
from service.sop_classes import RT_STRUCTURE_SET


@dataclass(frozen=True)
class HeaderReader:
    """Reads attributes of one object (or frame, ROI, ...) described by `where`."""

    # e.g. "CT instance number 7 frame 1", "ROI 4 of the RTSTRUCT"; or a function giving it,
    # called only for an error (naming every frame up front read three attributes per frame read)
    where: str | Callable[[], str]
    error: type[InputError]

    @property
    def place(self) -> str:
        return self.where() if callable(self.where) else self.where

    def fail(self, keyword: str, problem: str) -> NoReturn:
        raise self.error(f"{self.place}: {keyword} {problem}")

    def values(self, ds: Dataset, keyword: str) -> list[Any]:
        """All values of `keyword`, [] when it is absent or empty."""
        try:
            value = ds.get(keyword)
        except Exception as error:  # pydicom raises several types for a value it cannot decode
            raise self.error(f"{self.place}: {keyword} cannot be decoded ({type(error).__name__})") from error
        if value is None or (isinstance(value, str | bytes) and not value.strip()):
            return []
        return list(value) if isinstance(value, MultiValue | list | tuple) else [value]

    def single(self, ds: Dataset, keyword: str, *, required: bool) -> Any | None:
        """The one value of `keyword`; None if absent and not `required`."""
        values = self.values(ds, keyword)
        if len(values) > 1:
            self.fail(keyword, f"has {len(values)} values, expected 1")
        if not values:
            if required:
                self.fail(keyword, "is missing")
            return None
        return values[0]

    def text(self, ds: Dataset, keyword: str, *, required: bool = False) -> str:
        """A single-valued string ("" if absent and not `required`)."""
        value = self.single(ds, keyword, required=required)
        return "" if value is None else str(value).strip()

    def number(self, ds: Dataset, keyword: str) -> float:
        """A required single finite number."""
        return self._number(self.single(ds, keyword, required=True), keyword)

    def optional_number(self, ds: Dataset, keyword: str) -> float | None:
        """A single finite number, or None if absent."""
        value = self.single(ds, keyword, required=False)
        return None if value is None else self._number(value, keyword)

    def integer(self, ds: Dataset, keyword: str) -> int:
        """A required single integer (IS, US, ...)."""
        return self._integer(self.number(ds, keyword), keyword)

    def optional_integer(self, ds: Dataset, keyword: str) -> int | None:
        """A single integer, or None if absent."""
        number = self.optional_number(ds, keyword)
        return None if number is None else self._integer(number, keyword)

    def numbers(self, ds: Dataset, keyword: str, count: int | None = None) -> np.ndarray:
        """Required finite numbers: exactly `count` of them if given, else at least one."""
        values = self.values(ds, keyword)
        if not values:
            self.fail(keyword, "is missing")
        if count is not None and len(values) != count:
            self.fail(keyword, f"has {len(values)} values, expected {count}")
        return self._finite(values, keyword)

    def _number(self, value: Any, keyword: str) -> float:
        return float(self._finite([value], keyword)[0])

    def _integer(self, number: float, keyword: str) -> int:
        if not number.is_integer():
            self.fail(keyword, "is not an integer")
        return int(number)

    def _finite(self, values: list[Any], keyword: str) -> np.ndarray:
        try:
            numbers = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            self.fail(keyword, f"value {self._first_non_number(values)} is not a number")
        if not np.isfinite(numbers).all():
            self.fail(keyword, f"value {int(np.flatnonzero(~np.isfinite(numbers))[0]) + 1} is not finite")
        return numbers

    @staticmethod
    def _first_non_number(values: list[Any]) -> int:
        """1-based position of the first value that float() rejects (only runs when one does)."""
        return next(position for position, value in enumerate(values, start=1) if not _is_number(value))


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def frame_of_reference(dataset: Dataset) -> str:
    """The Frame of Reference UID an instance's geometry is in (images, RTSTRUCT, SEG alike); ""
    when the instance names none.

    An RTSTRUCT has no FrameOfReferenceUID of its own: its frame is in
    ReferencedFrameOfReferenceSequence, or per ROI in StructureSetROISequence.
    """
    if dataset.get("SOPClassUID") == RT_STRUCTURE_SET:
        frames = dataset.get("ReferencedFrameOfReferenceSequence") or []
        if frames:
            return str(frames[0].get("FrameOfReferenceUID", ""))
        rois = dataset.get("StructureSetROISequence") or []
        return str(rois[0].get("ReferencedFrameOfReferenceUID", "")) if rois else ""
    return str(dataset.get("FrameOfReferenceUID", ""))
