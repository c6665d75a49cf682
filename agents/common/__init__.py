"""Shared plumbing for every trainer: errors, devices, run folders, safe checkpoints.

``session`` (RunConfig, start_run, Run) is the start/resume path; ``checkpoint`` the one writer and
loader; ``validate`` the ranges of every numeric option; ``guards`` NaN/inf and interrupts;
``safe_io`` the careful reader and atomic writes.
"""

from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from heed.agents.common.device import resolve_device
from heed.agents.common.errors import HeedError, cli_main

__all__ = ["HeedError", "cli_main", "resolve_device", "load_checkpoint", "save_checkpoint", "latest_checkpoint"]
