"""User-facing errors: one clear line on the command line, never a deep traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from heed.envs.errors import HeedError, require, suggest

__all__ = ["HeedError", "cli_main", "exit_on_broken_pipe", "require", "suggest"]

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
    except BrokenPipeError:
        exit_on_broken_pipe()
    except KeyboardInterrupt as exc:
        print(str(exc) or "interrupted: the last checkpoint is kept; continue with --resume RUN_DIR", file=sys.stderr)
        raise SystemExit(130) from None


def exit_on_broken_pipe() -> None:
    """The reader of our output went away (``heed ... | head``): stop quietly, as Unix tools do.

    stdout is pointed at /dev/null first, so the interpreter's final flush cannot raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(141)  # 128 + SIGPIPE, what a shell reports for a process killed by the pipe
