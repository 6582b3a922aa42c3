"""`radiomics-cds features`: features per ROI and region under a parameter file (docs/features.md)."""

from __future__ import annotations

import argparse
import json
import sys

from service.allocator import keep_freed_memory_for_reuse
from service.feature_report import features_from_dicom, features_from_nifti
from service.report import format_feature_table
from service.scoring.parameter_file import load_parameter_file
from service.scoring.settings import ExtractionSettings


def run(args: argparse.Namespace) -> int:
    """Features per ROI and region under a pyradiomics parameter file (docs/features.md)."""
    keep_freed_memory_for_reuse()
    settings = load_parameter_file(args.settings) if args.settings else ExtractionSettings()
    if args.image:
        report = features_from_nifti(args.image, args.mask, settings)
    else:
        report = features_from_dicom(args.ct, args.rtstruct or args.seg, settings, args.roi)
    document = report.as_json()
    if args.json:
        json.dump(document, sys.stdout, indent=2, allow_nan=False)
        print()
    else:
        print(format_feature_table(report))
    return 0
