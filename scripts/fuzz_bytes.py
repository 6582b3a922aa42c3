"""Byte-level fuzz target: atheris mutates real DICOM files and feeds them to the readers.

Seeds are the shared test data's STS_019 RTSTRUCT and one of its CT slices, and the ct-seg
SEG. Each input is read with pydicom (a file pydicom cannot parse is an InputError in the
service, selection.read_instance, so it is skipped here) and then as one instance of a study,
through selection.select_inputs and lesion_masks, as the service reads it. An InputError is the right
answer to a damaged file; any other exception stops atheris with the input that raised it,
which is a crash site to fix. Run through scripts/fuzz-inputs --bytes (README.md, Tests).
"""

from __future__ import annotations

import io
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import pydicom
    from pydicom.dataset import Dataset

    from service.errors import InputError
    from service.imaging.contours import LESION_ROI_TYPES
    from service.imaging.selection import lesion_masks, select_inputs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STS_019 = DATA / "ct-rtstruct" / "STS_019"
CT_SEG = DATA / "ct-seg"
RTSTRUCT = STS_019 / "mask" / "RS.dcm"
STS_SLICES = sorted((STS_019 / "image").glob("*.dcm"))
SEEDS = [RTSTRUCT, CT_SEG / "liver.dcm", STS_SLICES[0]]
# The study every input joins: both CT series (less the seed slice, which the input replaces when
# it is a CT slice) and the real RTSTRUCT, so that a contour input is read on its own CT.
STUDY = [pydicom.dcmread(path) for path in [*STS_SLICES[1:], *sorted((CT_SEG / "ct").glob("*.dcm")), RTSTRUCT]]


def _read(ds: Dataset) -> None:
    """The service's reading of a study holding `ds`: selection (the last contour object wins,
    so `ds` if it is one), the CT volume, then the lesion masks."""
    inputs, _ = select_inputs([*STUDY, ds])
    lesion_masks(inputs, LESION_ROI_TYPES)


def one_input(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception:  # noqa: BLE001 - read_instance makes any of these an InputError
            return
        try:
            _read(ds)
        except InputError:
            pass


def main() -> None:
    corpus = Path(tempfile.mkdtemp(prefix="fuzz-bytes-"))
    for seed in SEEDS:
        (corpus / seed.name).write_bytes(seed.read_bytes())
    atheris.Setup([sys.argv[0], *sys.argv[1:], str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
