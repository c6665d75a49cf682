"""The one user-facing error type of heed, on the ground floor so that every layer can raise it.

``heed.envs`` is the lowest layer (``heed.analysis`` and ``heed.agents`` import it, it imports
neither), so :class:`HeedError` and its helpers live here; ``heed.agents.common.errors`` re-exports
them beside ``cli_main``, which turns any of them into one line and exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HeedError(Exception):
    """An error caused by the user's input (a bad path, id, value or device): one line, no traceback."""


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
