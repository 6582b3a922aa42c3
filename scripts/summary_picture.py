"""Render the tumour-board page of a study as a PNG, for the README (docs/summary-page.png).

The page is the same matplotlib figure the PDF is drawn from, rendered by Agg: no PDF
rasteriser is assumed on the machine. The study is scored in this process as `radiomics-cds
score` scores it, with `--prior` SRs as its priors (a follow-up's page plots the RECIST series).

    python scripts/summary_picture.py --ct DIR --rtstruct RS.dcm [--prior SR ...] --png OUT.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from service.roles.scorer import scoring_context
from service.config import Config
from service.imaging.selection import read_study_headers
from service.outputs.sr import build_measurement_report
from service.outputs.summary import summary_png
from service.outputs.summary_input import summary_input
from service.pipeline import assess_study
from service.priors.files import file_priors
from service.scoring.in_process import InProcessScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, required=True)
    contours = parser.add_mutually_exclusive_group(required=True)
    contours.add_argument("--rtstruct", type=Path)
    contours.add_argument("--seg", type=Path)
    parser.add_argument("--prior", type=Path, action="append", default=[])
    parser.add_argument("--png", type=Path, required=True)
    parser.add_argument("--dpi", type=float, default=90)
    args = parser.parse_args()
    config = Config()
    scorer = InProcessScorer(scoring_context(config), volume_filter_ml=config.volume_filter_ml,
                             max_message_bytes=config.grpc_max_message_bytes)
    assessed = assess_study(read_study_headers(args.ct, args.rtstruct or args.seg), scorer,
                            priors=file_priors(args.prior, config) if args.prior else None)
    sr = build_measurement_report(assessed.result, assessed.evidence, comparison=assessed.comparison)
    page = summary_input(assessed.result, sr_sop_instance_uid=str(sr.SOPInstanceUID),
                         comparison=assessed.comparison, key_images=assessed.key_images)
    args.png.write_bytes(summary_png(page, args.dpi))


if __name__ == "__main__":
    main()
