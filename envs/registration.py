"""One place that registers every ``heed/...`` Gymnasium id.

Each area keeps a ``register()`` function in its own module; list it below (one line each).
"""

from __future__ import annotations

import importlib

import gymnasium as gym

# modules with a ``register()`` function; each registers its own ids
AREAS: list[str] = [
    "heed.envs.atari",
    "heed.envs.algorithmic",
    "heed.envs.glimpse",
    "heed.envs.memory",  # ppo issue
    "heed.envs.ponder",
]

_done = False


def register_all() -> None:
    """Register the ids of every area once per process."""
    global _done
    if _done:
        return
    _done = True
    for name in AREAS:
        importlib.import_module(name).register()


def heed_ids() -> list[str]:
    """Every registered ``heed/...`` id (for tests and error messages)."""
    register_all()
    return sorted(k for k in gym.registry if k.startswith("heed/"))
