"""User-facing errors: one clear line on the command line, never a deep traceback."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class HeedError(Exception):
    """An error caused by the user's input (a bad path, id, value or device).

    Entry points catch it in :func:`cli_main` and print ``error: <message>`` on one line.
    """


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean: a, b?"`` for the closest matches of ``name`` in ``choices`` (or "")."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)]
    return f" Did you mean: {', '.join(close)}?" if close else ""


def require(condition: bool, message: str) -> None:
    """Raise :class:`HeedError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise HeedError(message)


def cli_main(fn: Callable[[], T]) -> T:
    """Run an entry point; turn :class:`HeedError` into one line on stderr and exit code 2.

    ``KeyboardInterrupt`` exits with code 130 after the callee has had the chance to checkpoint.
    """
    try:
        return fn()
    except HeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; continue with --resume RUN_DIR", file=sys.stderr)
        raise SystemExit(130) from None
