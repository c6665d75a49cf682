"""Guards shared by every training loop: non-finite values and interrupts.

* :func:`check_finite` stops a run the first time a logged loss (or any value given) is NaN or
  ±inf, with one line; the checkpoint writer refuses non-finite tensors (:func:`first_nonfinite`),
  so the last checkpoint on disk stays the last finite one.
* :func:`interruptible` turns SIGTERM into the same path as Ctrl-C: one final checkpoint of
  the completed work, then :class:`RunInterrupted` (exit code 130 in ``cli_main``) with the line
  that resumes the run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from heed.agents.common.errors import HeedError


class NonFiniteError(HeedError):
    """A loss, metric or tensor became NaN or ±inf: the run stops, nothing non-finite is saved."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM after the final checkpoint was written; ``str()`` is the line to print."""


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor holding NaN or ±inf, or ``None`` when all are finite."""
    for name, tensor in tensors.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def check_finite(values: Mapping[str, Any], step: int, where: str = "") -> None:
    """Raise :class:`NonFiniteError` when any value (float, int or tensor) is NaN or ±inf.

    Call it on the values a loop logs (at least every loss), once per logging interval: a run that
    diverges then stops within one interval. ``where`` names the run in the message.
    """
    for name, value in values.items():
        number = float(value.detach().float().mean()) if torch.is_tensor(value) else value
        if isinstance(number, (int, float)) and not isinstance(number, bool) and not math.isfinite(number):
            place = f" in '{where}'" if where else ""
            raise NonFiniteError(
                f"training diverged at step {step:,}{place}: {name} is {number}; stopped, and the last finite "
                "checkpoint is kept (try a smaller learning rate or a gradient clip)"
            )


@contextlib.contextmanager
def interruptible(save: Callable[[], Any], resume_line: str | Callable[[], str]) -> Iterator[None]:
    """Run a training loop so that Ctrl-C and SIGTERM both end in one final checkpoint and exit 130.

    Inside the block SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C does. On either, ``save()`` is
    called once (further signals are held off until it returns; keep the counters it saves at the
    last *completed* unit of work) and :class:`RunInterrupted` is raised carrying
    ``resume_line`` (a string or a callable returning it); ``cli_main`` prints it and exits 130.
    Other exceptions (a :class:`NonFiniteError`, a bug) pass through without saving.
    """
    main_thread = threading.current_thread() is threading.main_thread()

    def on_term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    # SIGINT gets the handler too: a process started in the background of a non-interactive shell
    # inherits SIGINT as ignored, and Ctrl-C / kill -INT must still checkpoint and stop it
    old = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
    try:
        yield
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted):
            raise
        held = _hold_signals() if main_thread else {}
        try:
            save()
        finally:
            _restore_signals(held)
        line = resume_line() if callable(resume_line) else resume_line
        raise RunInterrupted(line) from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _hold_signals() -> dict[int, Any]:
    """Ignore SIGINT/SIGTERM while the final checkpoint is written (a second Ctrl-C must not cut it)."""
    held = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        held[sig] = signal.signal(sig, lambda signum, frame: print(
            "still saving the final checkpoint...", file=sys.stderr))
    return held


def _restore_signals(held: dict[int, Any]) -> None:
    for sig, handler in held.items():
        signal.signal(sig, handler)
