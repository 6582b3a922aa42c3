"""A SYNTHETIC follow-up of a real CT + RTSTRUCT study, with a change known in advance.

Used by the quick start (scripts/demo) to show lesion change, and by the tests as a follow-up
whose expected change they measure themselves. It is demo and test tooling, not a feature of
the service: it fabricates a study, so it lives outside the package.

The same CT (same Frame of Reference, same voxels) is re-issued as a new study at a later Study
Date, with new Study, Series and SOP Instance UIDs (the RTSTRUCT's references follow them), and
every contour of the RTSTRUCT is scaled in-plane by `scale` about the ROI's centroid (the mean
of its contour points, one fixed axis for all slices): each polygon's longest in-plane chord
then changes by exactly `scale` and its area by scale**2. Study and Series Descriptions say
SYNTHETIC and the factor, so that the result cannot pass for a real examination.

    python scripts/synthetic_follow_up.py CT_DIR RTSTRUCT OUT_DIR --scale 1.3 --days-later 94
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid


def description(scale: float) -> str:
    """The Study and Series Description of every instance of the synthetic follow-up."""
    return f"SYNTHETIC follow-up (contour scaled x{scale:g})"


def _points(contour: Dataset) -> np.ndarray:
    return np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)


def _new_uids(dataset: Dataset, uids: Mapping[str, str]) -> None:
    """Every UI element of the dataset (nested ones too) that names an old UID gets the new one."""
    def replace(ds: Dataset, element: pydicom.DataElement) -> None:
        if element.VR == "UI" and str(element.value) in uids:
            element.value = uids[str(element.value)]
    dataset.walk(replace)


def _relabel(dataset: Dataset, uids: Mapping[str, str], study_date: str, label: str) -> None:
    _new_uids(dataset, uids)
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.StudyDate, dataset.StudyDescription, dataset.SeriesDescription = study_date, label, label


def write_follow_up(ct_dir: Path, rtstruct: Path, out: Path, *, scale: float, study_date: str) -> tuple[Path, Path]:
    """(CT directory, RTSTRUCT file) of the follow-up, written under `out`."""
    cts = [pydicom.dcmread(path) for path in sorted(ct_dir.iterdir())]
    rs = pydicom.dcmread(rtstruct)
    old = {str(rs.StudyInstanceUID), str(rs.SeriesInstanceUID), str(rs.SOPInstanceUID)}
    old |= {str(uid) for ct in cts for uid in (ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)}
    uids = {uid: generate_uid() for uid in sorted(old)}  # the Frame of Reference stays: same voxels
    ct_out, rs_out = out / "ct", out / "rtstruct"
    ct_out.mkdir(parents=True)
    rs_out.mkdir(parents=True)
    label = description(scale)
    for index, ct in enumerate(cts):
        _relabel(ct, uids, study_date, label)
        ct.save_as(ct_out / f"{index:06d}.dcm")
    _relabel(rs, uids, study_date, label)
    for roi in rs.ROIContourSequence:
        centre = np.concatenate([_points(c) for c in roi.ContourSequence]).mean(axis=0)
        for contour in roi.ContourSequence:
            points = _points(contour)
            points[:, :2] = centre[:2] + scale * (points[:, :2] - centre[:2])
            contour.ContourData = [f"{v:.6f}" for v in points.ravel()]
    target = rs_out / "RS.dcm"
    rs.save_as(target)
    return ct_out, target


def _later(rtstruct: Path, days: int) -> str:
    """The DICOM date `days` after the study's own StudyDate."""
    date = datetime.datetime.strptime(str(pydicom.dcmread(rtstruct, stop_before_pixels=True).StudyDate), "%Y%m%d")
    return (date + datetime.timedelta(days=days)).strftime("%Y%m%d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct", type=Path, help="directory of the baseline CT series")
    parser.add_argument("rtstruct", type=Path, help="the baseline RTSTRUCT")
    parser.add_argument("out", type=Path, help="new directory: the follow-up goes to OUT/ct and OUT/rtstruct")
    parser.add_argument("--scale", type=float, required=True, help="in-plane contour scale factor")
    parser.add_argument("--days-later", type=int, required=True, help="StudyDate offset from the baseline")
    args = parser.parse_args()
    # The source's own headers may exceed a VR's length (the sample CT has an 18-character SH):
    # they are copied as they are, without pydicom's warning on each file.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    write_follow_up(args.ct, args.rtstruct, args.out, scale=args.scale,
                    study_date=_later(args.rtstruct, args.days_later))


if __name__ == "__main__":
    main()
