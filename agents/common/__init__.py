"""Shared plumbing for every trainer: errors, devices, run folders, safe checkpoints."""

from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from heed.agents.common.device import resolve_device
from heed.agents.common.errors import HeedError, cli_main

__all__ = ["HeedError", "cli_main", "resolve_device", "load_checkpoint", "save_checkpoint", "latest_checkpoint"]
