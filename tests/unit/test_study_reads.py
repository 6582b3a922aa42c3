"""A study's files are parsed once: the worker reads each instance's header, and the chosen CT
series' pixel data is read from its place in the same file (service.imaging.selection).

The reference for the volume is a plain whole-file read of every slice (pydicom.dcmread, no
deferral) through the same loader: the deferred read must give the same voxels, bit for bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from service.errors import InputError
from service.imaging.selection import read_study_instance, select_inputs
from service.imaging.volume import load_ct_series


def _study_files(sts019: Path) -> list[Path]:
    return [*sorted((sts019 / "image").iterdir()), sts019 / "mask" / "RS.dcm"]


def _pixel_data_deferred(ds: Dataset) -> bool:
    return ds.get_item("PixelData", keep_deferred=True).value is None


def test_pixel_data_is_read_when_the_series_is_chosen_and_gives_the_same_volume(sts019: Path) -> None:
    datasets = [read_study_instance(path, ct_image=path.parent.name == "image") for path in _study_files(sts019)]
    ct = [ds for ds in datasets if "PixelData" in ds]
    assert ct and all(_pixel_data_deferred(ds) for ds in ct)  # headers only, so far

    inputs, _ = select_inputs(datasets)

    reference = load_ct_series([pydicom.dcmread(path) for path in sorted((sts019 / "image").iterdir())])
    assert inputs.ct.hu.dtype == reference.hu.dtype
    assert np.array_equal(inputs.ct.hu, reference.hu)
    assert inputs.ct.geometry == reference.geometry
    assert not any(_pixel_data_deferred(ds) for ds in ct)


def test_each_file_is_parsed_once(sts019: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spy on pydicom.dcmread (the real reader runs): one parse per file, none again for
    the pixels."""
    parsed: list[str] = []
    real = pydicom.dcmread

    def counting(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        parsed.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting)
    files = _study_files(sts019)
    select_inputs([read_study_instance(path, ct_image=path.parent.name == "image") for path in files])
    assert sorted(parsed) == sorted(path.name for path in files)


def test_a_file_replaced_after_its_header_was_read_is_an_input_error(sts019: Path, tmp_path: Path) -> None:
    """The spool file changes between the header read and the pixel read (another copy of the
    instance stored over it, with a longer header): the pixel data is no longer where it was."""
    folder = tmp_path / "study"
    shutil.copytree(sts019 / "image", folder)
    files = [*sorted(folder.iterdir()), sts019 / "mask" / "RS.dcm"]
    datasets = [read_study_instance(path, ct_image=path.parent != sts019 / "mask") for path in files]
    replaced = pydicom.dcmread(files[0])
    replaced.ImageComments = "x" * 200  # moves PixelData 200 bytes on
    replaced.save_as(files[0])

    with pytest.raises(InputError, match="pixel data cannot be read"):
        select_inputs(datasets)
