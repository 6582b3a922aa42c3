"""`radiomics-cds ingest`: listener, worker, outbox and HTTP, scoring through `scorer_address`."""

from __future__ import annotations

import argparse

from service.config import load_config
from service.roles.ingest import run_ingest


def run(args: argparse.Namespace) -> int:
    run_ingest(load_config(args.config, dicom_port=args.port))
    return 0
