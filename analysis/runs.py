"""Read the scalars of a heed run folder back from its TensorBoard events, whatever the trainer.

Every trainer (``dqn``, ``supervised``, ``ppo``, ``glimpse``) logs its numbers as TensorBoard
scalars in its run folder, while the side files differ (``metrics.jsonl`` for supervised runs,
``results.json`` for glimpse, ``eval.json`` for PPO, none for DQN). The events are therefore the one
source that sweeps aggregate and that :mod:`heed.scripts.summarize_runs` falls back to. Events that a
resumed run purged (``purge_step``) are dropped by TensorBoard's own reader. Before that reader opens
anything, every event file of the folder must be a regular file (a named pipe would block the reader
forever, a folder would crash it): :func:`event_files` refuses anything else with one line.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heed.envs.errors import HeedError, check_regular_file

#: the held-out or episodic numbers each trainer logs: ``eval/*`` (supervised, dqn, ppo, glimpse test
#: error), dqn ``charts/episodic_return``, ppo ``charts/ep_rew_mean`` and ``charts/success_rate``
DEFAULT_METRICS: tuple[str, ...] = ("eval/*", "charts/episodic_return", "charts/ep_rew_mean", "charts/success_rate")

#: the tag that maps a run's steps to training CPU seconds, where the trainer logs it
CPU_TAG = "charts/cpu_seconds"


@dataclass(frozen=True)
class Curve:
    """One scalar tag of one run: ``steps`` ``[T]`` (increasing) and ``values`` ``[T]``."""

    steps: np.ndarray
    values: np.ndarray

    @property
    def last(self) -> float:
        return float(self.values[-1])


def _is_event_name(name: str) -> bool:
    """TensorBoard's own test (``io_wrapper.IsTensorFlowEventsFile``): every name holding ``tfevents``."""
    return "tfevents" in name


def has_events(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds TensorBoard event files (entries named like them, whatever they are)."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(_is_event_name(p.name) for p in run_dir.iterdir())


def event_files(run_dir: str | os.PathLike) -> list[Path]:
    """The event files TensorBoard would read in ``run_dir`` (not its subfolders), sorted by name.

    Each must be a regular file (a symlink to one is followed); a named pipe, socket, device or
    folder named like an event file is refused with one :class:`HeedError` line, without opening it.
    """
    run_dir = Path(run_dir)
    files = sorted(p for p in run_dir.iterdir() if _is_event_name(p.name))
    for path in files:
        check_regular_file(path, None, "TensorBoard event file")
    return files


def read_scalars(run_dir: str | os.PathLike) -> dict[str, Curve]:
    """Every scalar tag in ``run_dir``'s events (not its subfolders), sorted by step, one value per step.

    When a step was logged twice (a resumed run re-logging it), the later value wins.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    if not has_events(run_dir):
        raise HeedError(f"'{run_dir}' holds no TensorBoard events (is it a heed run folder?)")
    event_files(run_dir)  # every one a regular file, before TensorBoard's reader opens any
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    curves: dict[str, Curve] = {}
    for tag in acc.Tags().get("scalars", []):
        by_step = {int(e.step): float(e.value) for e in acc.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=float)
        curves[tag] = Curve(steps, np.array([by_step[int(s)] for s in steps], dtype=float))
    return curves


def select(tags: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The tags matching any shell-style pattern (``eval/*``), in sorted order."""
    patterns = list(patterns)
    return sorted(t for t in tags if any(fnmatch.fnmatchcase(t, p) for p in patterns))


def lower_is_better(tag: str) -> bool:
    """Errors, bits and losses improve downwards; returns, rewards and accuracies upwards."""
    return any(word in tag for word in ("error", "bits", "loss"))


def to_cpu_seconds(curve: Curve, cpu: Curve) -> Curve:
    """Re-index ``curve`` by training CPU seconds, interpolating the run's ``charts/cpu_seconds`` curve."""
    steps, values = cpu.steps, cpu.values
    if steps[0] > 0:  # no CPU time has passed at step 0
        steps, values = np.concatenate([[0.0], steps]), np.concatenate([[0.0], values])
    seconds = np.interp(curve.steps, steps, values)
    return Curve(seconds, curve.values)
