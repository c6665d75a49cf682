"""User-facing errors: one clear line on the command line, never a deep traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from heed.envs.errors import HeedError, require, suggest

__all__ = ["HeedError", "cli_main", "require", "suggest"]

T = TypeVar("T")


def cli_main(fn: Callable[[], T]) -> T:
    """Run an entry point; turn :class:`HeedError` into one line on stderr and exit code 2.

    ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM inside ``Run.interruptible``) exits with code 130 after
    the callee has had the chance to checkpoint; a ``RunInterrupted`` carries the line that resumes.
    """
    try:
        return fn()
    except HeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as exc:
        print(str(exc) or "interrupted: the last checkpoint is kept; continue with --resume RUN_DIR", file=sys.stderr)
        raise SystemExit(130) from None
