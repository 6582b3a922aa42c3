"""`radiomics-cds scorer`: the gRPC scoring core; as serve's child (--lifeline-fd), it also stops
when serve is gone."""

from __future__ import annotations

import argparse
import threading

from service.allocator import keep_freed_memory_for_reuse
from service.config import load_config
from service.lifeline import follow_parent
from service.roles.scorer import run_scorer


def run(args: argparse.Namespace) -> int:
    """The scorer role until SIGTERM/SIGINT, or until serve is gone when it is serve's child."""
    keep_freed_memory_for_reuse()
    stop = threading.Event()
    on_ready = follow_parent(args.lifeline_fd, stop) if args.lifeline_fd is not None else None
    run_scorer(load_config(args.config, scorer_address=args.address), stop, on_ready)
    return 0
