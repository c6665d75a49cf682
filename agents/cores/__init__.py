"""Recurrent cores sharing one contract (see :mod:`agents.cores.base`)."""

from heed.agents.cores.base import RecurrentCore, detach_state, map_state, reset_state, unroll

__all__ = ["RecurrentCore", "unroll", "reset_state", "detach_state", "map_state"]
