"""Arguments shared by the entry points: ``--config recipe.toml`` and ``--set section.key=value ...``."""
from __future__ import annotations

import argparse

from rtp_scale.config import Config, load_config


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line (with a pointer to --help) and exits 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def config_parser(prog: str, description: str) -> OneLineParser:
    parser = OneLineParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="RECIPE", help="TOML recipe (see configs/); defaults apply without one")
    parser.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", nargs="+", action="extend",
                        default=[], help="override config keys, e.g. --set inner.steps=50 run.seed=1")
    return parser


def config_from_args(args: argparse.Namespace, extra_overrides: list[str] | None = None) -> Config:
    """Recipe + flag shorthands + ``--set`` (``--set`` wins, being the most explicit)."""
    return load_config(args.config, list(extra_overrides or []) + list(args.overrides))
