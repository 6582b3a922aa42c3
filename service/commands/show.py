"""`radiomics-cds show`: the tables of one of our SRs."""

from __future__ import annotations

import argparse

import pydicom

from service.outputs.artefacts import Artefact, artefact_path
from service.report import change_rows_from_sr, format_change_table, format_table, response_line_from_sr, rows_from_sr


def run(args: argparse.Namespace) -> int:
    """The lesion table of one of our SRs, then its change table when it is a follow-up."""
    dataset = pydicom.dcmread(args.sr)
    rows, footer = rows_from_sr(dataset)
    print(format_table(rows, footer))
    changes = change_rows_from_sr(dataset)
    if changes:
        print()
        print("Change against the earlier studies:")
        print(format_change_table(changes))
    response = response_line_from_sr(dataset)
    if response:
        print()
        print(response)
    page = artefact_path(args.sr.parent, str(dataset.SOPInstanceUID), Artefact.SUMMARY_PDF)
    if page.is_file():
        print()
        print(f"Tumour-board page: {page}")
    return 0
