"""A LABELMAP SEG written by highdicom (hd.seg.Segmentation, SegmentationType LABELMAP) from
CT slices and a label volume, for tests that need the 2024 segmentation type no shared case has."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid


def label_map_seg(ct_slices: list[Dataset], labels: np.ndarray, names: dict[int, str]) -> Dataset:
    """A LABELMAP SEG on `ct_slices` (sorted as `labels`' first axis): voxel value n of `labels`
    (slices, rows, columns) is segment n, named names[n].

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
        source_images=sources, pixel_array=labels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=300, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="radiomics-cds tests", manufacturer_model_name="label_map_seg", software_versions="1",
        device_serial_number="1",
    )
