"""What each command of the command line (service.cli) does: one module per command, named as
the command, with a `run(args) -> exit code`, imported once that command runs.

Apart from the parser so that importing service.cli loads none of this: a process spawned by
`serve` (the page renderer, service.outputs.page_process) re-imports the main module under
multiprocessing's spawn start method, and would otherwise load the scoring core, gRPC and the
DICOM listener only to render pages.

One module per command so that each loads only what it uses. With one module for all, every
command imported the scoring engine, gRPC, the listener and the output builders first: 2.7 s
before `status` printed a line (0.6 s now), and a scorer pod or serve's scorer child loaded the
listener and the output builders it never runs.
"""

from __future__ import annotations

import argparse
import importlib

COMMANDS = ("serve", "ingest", "scorer", "score", "features", "send", "status", "redeliver", "rescore", "prune",
            "show")
"""The commands of service.cli's sub-parsers, each the name of its module here."""


def run(args: argparse.Namespace) -> int:
    """Run the command `args.command` names (one of COMMANDS); its exit code."""
    command = importlib.import_module(f"{__name__}.{args.command}")
    code: int = command.run(args)
    return code
