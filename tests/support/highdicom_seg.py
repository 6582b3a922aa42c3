"""SEGs written by highdicom (hd.seg.Segmentation) from CT slices, for tests that need a
segmentation type no shared case has: LABELMAP (new in 2024) and a genuinely FRACTIONAL one."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid


def highdicom_seg(ct_slices: list[Dataset], pixels: np.ndarray, names: dict[int, str],
                  kind: hd.seg.SegmentationTypeValues = hd.seg.SegmentationTypeValues.LABELMAP) -> Dataset:
    """A SEG of type `kind` on `ct_slices` (sorted as `pixels`' first axis), segments numbered
    and named by `names`. `pixels` is as highdicom takes it: for LABELMAP (slices, rows,
    columns) of segment numbers; for FRACTIONAL (slices, rows, columns, segments) of fractions
    in [0, 1], which highdicom stores as integers up to MaximumFractionalValue 255.

    The ct-seg slices carry an empty SpecificCharacterSet (a quirk of the shared data), which
    highdicom refuses to copy into the new object: copies without it are passed instead.
    """
    sources = [copy.deepcopy(ds) for ds in ct_slices]
    for ds in sources:
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=codes.SCT.Organ, segmented_property_type=codes.SCT.Liver,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number, name in sorted(names.items())
    ]
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels if kind == hd.seg.SegmentationTypeValues.FRACTIONAL else pixels.astype(np.uint8),
        segmentation_type=kind, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=300, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="radiomics-cds tests", manufacturer_model_name="highdicom_seg", software_versions="1",
        device_serial_number="1",
    )
