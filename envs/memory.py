"""Memory environments for recurrent policies: ``heed/MemoryLength-v0``, ``heed/CartPoleNoVel-v0``, POPGym.

The ids are registered from the table in :mod:`heed.envs.registration`, whose ``make_env`` builds any
id with one-line errors (and asks for the optional ``popgym`` extra through :func:`require_popgym`).
The NTM tasks (``heed/Copy-v0`` ...) are sequence-task envs; recurrent PPO trains on them as on any env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MEMORY_LENGTH_ID = "heed/MemoryLength-v0"
CARTPOLE_NOVEL_ID = "heed/CartPoleNoVel-v0"  # both in heed.envs.registration's table


class MemoryLengthEnv(gym.Env):
    """Remember a cue for L steps, then act on it (after bsuite's ``memory_len``, Osband et al. 2020).

    ## Description
    At step 0 the observation shows a random cue c in {-1, +1}. For the next L steps the cue is
    hidden (0). At step L the query flag is raised and the agent must answer with the action that
    matches the cue (0 for -1, 1 for +1). Only the answer is rewarded; actions before it are ignored.
    With ``memory_length=0`` the cue and the query come together and a feedforward policy can solve
    it; for L >= 1 a memoryless policy can do no better than chance (50 %).

    ## Action Space
    ``Discrete(2)``.

    ## Observation Space
    ``Box(-1, 1, (3,))``: ``[cue, query flag, steps left / max(L, 1)]``. The time feature lets a
    feedforward policy know when to answer, so its failure is a failure of memory only.

    ## Rewards
    +1 for the right answer, -1 for the wrong one, 0 on every other step.

    ## Episode End
    Terminates after the answer (L + 1 steps). ``info["is_success"]`` is given on the last step
    (Stable-Baselines3's key for success rates).

    ## Arguments
    ``memory_length`` (L, default 5): steps between the cue and the query (0 <= L).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012  (Gymnasium's convention)

    def __init__(self, memory_length: int = 5, render_mode: str | None = None) -> None:
        if int(memory_length) != memory_length or memory_length < 0:
            raise ValueError(f"memory_length must be a non-negative int, got {memory_length!r}")
        self.memory_length = int(memory_length)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0
        self._cue = 1

    def _obs(self) -> np.ndarray:
        L = self.memory_length
        cue = float(self._cue) if self._t == 0 else 0.0
        query = 1.0 if self._t == L else 0.0
        return np.array([cue, query, (L - self._t) / max(L, 1)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._cue = 1 if self.np_random.integers(2) else -1
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        if self._t < self.memory_length:
            self._t += 1
            return self._obs(), 0.0, False, False, {}
        correct = (int(action) == 1) == (self._cue == 1)
        self._t += 1
        obs = np.zeros(3, dtype=np.float32)
        return obs, 1.0 if correct else -1.0, True, False, {"is_success": bool(correct)}

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return f"t={self._t}/{self.memory_length} cue={'+' if self._cue == 1 else '-'}"
        return None


class HideVelocity(gym.ObservationWrapper):
    """Keep only the position entries of an observation vector (CartPole: x and theta).

    ## Observation Space
    ``Box`` of the kept entries of the wrapped env's observation.
    """

    def __init__(self, env: gym.Env, keep: tuple[int, ...] = (0, 2)) -> None:
        super().__init__(env)
        box = env.observation_space
        self.keep = np.asarray(keep)
        self.observation_space = spaces.Box(box.low[self.keep], box.high[self.keep], dtype=box.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep]


def make_cartpole_novel(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """CartPole-v1 (500-step limit) with the cart and pole velocities hidden: ``[x, theta]``.

    A policy must infer the velocities from consecutive observations, so it needs memory (POPGym's
    "Stateless CartPole" is the same idea, Morad et al. 2023).
    """
    return HideVelocity(gym.make("CartPole-v1", render_mode=render_mode, **kwargs))


def popgym_available() -> bool:
    """Whether the optional ``popgym`` extra is installed."""
    try:
        import popgym  # noqa: F401
    except ImportError:
        return False
    return True


def require_popgym(env_id: str) -> None:
    """Raise a one-line error when a POPGym id is asked for without the extra installed."""
    from heed.envs.errors import HeedError

    if not popgym_available():
        raise HeedError(
            f"'{env_id}' is a POPGym environment, but popgym is not installed: "
            "pip install 'heed-attention[popgym]' (or pip install popgym)"
        )
