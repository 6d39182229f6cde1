"""What every `pretrainer` command shares, kept apart from cli.py so that the command modules
(cli_models) use it without importing the CLI back: one-line user errors, the parser of the
commands that take a run dir, and the check of a Hydra job's optimizer group (plain mappings in,
no Hydra import)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from pretrainer.config import ConfigError


def run_dir_parser(name: str, description: str, out_help: str) -> argparse.ArgumentParser:
    """`pretrainer NAME RUN_DIR [--out DIR]`."""
    parser = argparse.ArgumentParser(prog=f"pretrainer {name}", description=description)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    return parser


def fail(error: Exception, command: str | None = None) -> NoReturn:
    """A user error as one line on stderr (`pretrainer [command]: ...`, no traceback) and its
    exit code (pretrainer.errors; 2 for bad input of any kind)."""
    kind = "config error: " if type(error) is ConfigError else ""  # subclasses (file errors) say what they are
    print(f"pretrainer{' ' + command if command else ''}: {kind}{error}", file=sys.stderr)
    raise SystemExit(getattr(error, "exit_code", 2)) from None


def check_optimizer_group(optimizer: str, choices: Mapping[str, str | None]) -> None:
    """Refuse `trainer.optimizer` given as a key against the `trainer/optimizer` group Hydra
    chose (`choices`: its runtime choices): the group's other settings would stay with the
    wrong optimizer (`objective=t5_span trainer.optimizer=adamw`: AdamW at Adafactor's lr 1e-2)."""
    group = choices.get("trainer/optimizer")
    if group is not None and group != optimizer:
        raise ConfigError(f"trainer.optimizer={optimizer} was set as a key, but the trainer/optimizer group is "
                          f"{group}, whose lr and weight_decay would stay; choose the group: "
                          f"trainer/optimizer={optimizer}")
