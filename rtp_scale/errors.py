"""One exception type for mistakes a user can fix (bad flag, missing file, impossible budget).

Entry points catch :class:`UserError`, print its message on one line and exit with status 2, so a
wrong flag never produces a traceback. Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, NoReturn


class UserError(Exception):
    """A problem in the user's input, reported as a single line without a traceback."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run an entry point's ``main``; turn a :class:`UserError` into one line on stderr and exit 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    code = 0 if code is None else int(code)
    # one rank of a multi-process run ends without the interpreter's teardown, where surviving gloo threads can
    # abort it (rtp_scale.distributed.context.end_rank_process); looked up lazily: this module imports no torch
    if (context := sys.modules.get("rtp_scale.distributed.context")) is not None:
        context.end_rank_process(code)
    sys.exit(code)
