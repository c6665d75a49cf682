"""Run folders and TensorBoard logging shared by every trainer.

The low-level helpers here (:func:`default_run_dir`, :func:`prepare_run_dir`, :func:`save_config`,
:func:`open_writer`) are used by :func:`heed.agents.common.session.start_run`, which is what a
trainer calls; :class:`Every` is the one "every N steps" schedule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from heed.agents.common.errors import HeedError
from heed.agents.common.safe_io import OutputFolder, disk_errors, write_json_atomic

#: the TensorBoard tag groups every trainer shares (plus the area's own image groups)
TAG_GROUPS = ("charts", "losses", "eval")


def default_run_dir(kind: str, name: str, seed: int) -> Path:
    """CleanRL-style ``runs/{kind}__{name}__{seed}__{unix time}`` (``/`` in env ids becomes ``-``)."""
    safe = name.replace("/", "-")
    return Path("runs") / f"{kind}__{safe}__{seed}__{int(time.time())}"


def prepare_run_dir(run_dir: str | os.PathLike) -> Path:
    """Create ``run_dir`` (and parents) and check it can be written, with a one-line error if not."""
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise HeedError(f"cannot use '{path}' as a run dir: it is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise HeedError(f"cannot write the run dir '{path}': {exc.strerror or exc}") from None
    return path


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-ready dict (paths and enums become strings)."""
    raw = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return json.loads(json.dumps(raw, default=str))


def save_config(run_dir: str | os.PathLike, cfg: Any) -> None:
    """Write ``<run_dir>/config.json`` (atomically; a full or read-only disk gives one line)."""
    with disk_errors(Path(run_dir) / "config.json"):
        write_json_atomic(Path(run_dir) / "config.json", config_to_dict(cfg))


def hparams_markdown(cfg: Any) -> str:
    """The hyperparameters as a markdown table (logged as TensorBoard text, as CleanRL does)."""
    rows = "\n".join(f"|{k}|{v}|" for k, v in config_to_dict(cfg).items())
    return "|param|value|\n|-|-|\n" + rows


def open_writer(run_dir: str | os.PathLike, cfg: Any | None = None, purge_step: int | None = None):
    """A TensorBoard ``SummaryWriter`` on ``run_dir``; logs the config as text on a fresh run.

    ``purge_step`` (on resume) discards events at or after that step left by the interrupted run,
    so the curves continue without a doubled tail.
    """
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir), purge_step=purge_step)
    if cfg is not None and purge_step is None:
        writer.add_text("hyperparameters", hparams_markdown(cfg))
    return writer


@contextlib.contextmanager
def output_event_writer(log_dir: str | os.PathLike, flag: str = "--tensorboard") -> Iterator[Any]:
    """A ``SummaryWriter`` for a command's TensorBoard output (figures, stills, aggregate curves).

    Unlike a training run, such a command is re-run to replace its output: the event files that an
    earlier run of a heed command wrote in ``log_dir`` (listed in its output manifest, see
    :class:`heed.agents.common.safe_io.OutputFolder`) are deleted first, and the new one is recorded,
    so TensorBoard never shows the curves twice. Event files heed did not write are left alone.
    """
    from torch.utils.tensorboard import SummaryWriter

    folder = OutputFolder(log_dir, flag=flag)
    folder.remove_ours("*tfevents*")
    before = {p.name for p in folder.root.iterdir()}
    with disk_errors(folder.root):
        writer = SummaryWriter(str(folder.root))
    try:
        for path in folder.root.iterdir():  # SummaryWriter creates its event file when it is made
            if "tfevents" in path.name and path.name not in before:
                folder.adopt(path.name)
        yield writer
    finally:
        writer.close()


def flat_hparams(cfg: Any, prefix: str = "") -> dict[str, bool | int | float | str]:
    """A (nested) dataclass config as flat ``{"run.seed": 1, ...}`` scalars for TensorBoard's HPARAMS tab."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in (config_to_dict(cfg) if not isinstance(cfg, dict) else cfg).items():
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = json.dumps(value)
    return out


def log_hparams(writer, values: dict[str, Any], metric_tags: tuple[str, ...] = ()) -> None:
    """Fill TensorBoard's HPARAMS tab of ``writer``'s own run (not a sub-run, as ``add_hparams`` makes).

    ``metric_tags`` are scalar tags the trainer logs (e.g. ``eval/return``): the tab shows their last values.
    """
    from torch.utils.tensorboard.summary import hparams

    exp, ssi, sei = hparams(flat_hparams(values), {tag: 0.0 for tag in metric_tags})
    for summary in (exp, ssi, sei):
        writer.file_writer.add_summary(summary)


class Every:
    """The one "every N steps" schedule: ``Every(n, start).due(step)`` is true once per crossed multiple.

    Steps may advance by more than one (a batch of 32 sequences, 8 envs), so ``due`` fires when
    ``step // n`` has grown since the last time it fired (or since ``start``, the step a run
    resumed from). ``n == 0`` never fires (a disabled schedule).

    >>> every = Every(100)
    >>> [s for s in range(0, 400, 32) if every.due(s)]
    [128, 224, 320]
    """

    def __init__(self, n: int, start: int = 0) -> None:
        if n < 0:
            raise HeedError(f"a schedule interval must be >= 0, got {n}")
        self.n = int(n)
        self.last = int(start)

    def due(self, step: int) -> bool:
        """Whether a multiple of ``n`` lies in ``(last, step]``; if so, remember ``step``."""
        if self.n == 0 or step // self.n <= self.last // self.n:
            return False
        self.last = step
        return True
