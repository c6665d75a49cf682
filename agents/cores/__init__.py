"""Recurrent cores sharing one contract (see :mod:`heed.agents.cores.base`).

One file per core: its config dataclass and its class. The table that names them, and
``build_core``, is :mod:`heed.agents.parts`; a new core is its file here plus one line there.
"""

from heed.agents.cores.base import RecurrentCore, detach_state, map_state, reset_state, unroll

__all__ = ["RecurrentCore", "unroll", "reset_state", "detach_state", "map_state"]
