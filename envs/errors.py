"""The one user-facing error type of heed, on the ground floor so that every layer can raise it.

``heed.envs`` is the lowest layer (``heed.analysis`` and ``heed.agents`` import it, it imports
neither), so :class:`HeedError` and its helpers live here; ``heed.agents.common.errors`` re-exports
them beside ``cli_main``, which turns any of them into one line and exit code 2. The one check
that a file a user handed heed is a regular file (:func:`check_regular_file`) lives here too, so that
``heed.analysis`` (TensorBoard event files) and ``heed.agents`` (checkpoints, configs) share it.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from pathlib import Path


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


def check_regular_file(path: str | os.PathLike, root: str | os.PathLike | None, what: str) -> Path:
    """``path`` resolved, after checking (without opening it) that it is a regular file inside ``root``.

    A folder, named pipe (reading one blocks forever), socket or device is refused with one
    :class:`HeedError` line, and so is a symlink that leads outside ``root`` (when ``root`` is given).
    """
    path = Path(path)
    try:
        info = os.stat(path)  # stat never opens: a FIFO cannot block here
    except FileNotFoundError:
        raise HeedError(f"{what} '{path}' does not exist") from None
    except OSError as exc:
        raise HeedError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise HeedError(f"{what} '{path}' is {kind}; refusing to read it")
    real = Path(os.path.realpath(path))
    if root is not None:
        base = Path(os.path.realpath(root))
        if base not in real.parents:
            raise HeedError(f"{what} '{path}' points outside '{root}' (to '{real}'); refusing to follow it")
    return real
