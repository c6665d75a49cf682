"""Run folders and TensorBoard logging shared by every trainer."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from heed.agents.common.checkpoint import write_json_atomic
from heed.agents.common.errors import HeedError


def default_run_dir(kind: str, name: str, seed: int) -> Path:
    """CleanRL-style ``runs/{kind}__{name}__{seed}__{unix time}`` (``/`` in env ids becomes ``-``)."""
    safe = name.replace("/", "-")
    return Path("runs") / f"{kind}__{safe}__{seed}__{int(time.time())}"


def prepare_run_dir(run_dir: str | os.PathLike) -> Path:
    """Create ``run_dir`` (and parents) and check it can be written, with a one-line error if not."""
    path = Path(run_dir)
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
    """Write ``<run_dir>/config.json``."""
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
