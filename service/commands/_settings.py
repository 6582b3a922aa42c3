"""The settings a command runs with: the configuration file, the environment, then its flags."""

from __future__ import annotations

import argparse
from typing import Any

from service.config import Config, load_config


def command_config(args: argparse.Namespace, **overrides: Any) -> Config:
    """`--config` (or the environment alone), with the command's flags in `overrides` on top."""
    return load_config(args.config, **overrides)
