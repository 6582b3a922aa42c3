"""`radiomics-cds serve`: the scorer as a child process and ingest here (service.roles.serve)."""

from __future__ import annotations

import argparse

from service.config import load_config
from service.roles.serve import run_serve


def run(args: argparse.Namespace) -> int:
    return run_serve(load_config(args.config, dicom_port=args.port, log_level=args.log_level), args.config)
