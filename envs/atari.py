"""Atari with the DeepMind preprocessing, on Gymnasium 1.x and ale-py (ROMs ship with ale-py).

Preprocessing (Mnih et al. 2015; Machado et al. 2018 for the terms):

- up to 30 no-op actions at reset;
- frame skip 4, the observation the max over the last two frames (flicker);
- 84x84 greyscale, uint8;
- FIRE after reset where the game needs it;
- for training only: a lost life ends the episode for the learner, rewards clipped to [-1, 1];
- a stack of the last 4 frames: observations are ``uint8 [4, 84, 84]``.

Evaluation (``training=False``) plays full games (all lives) with unclipped rewards.

Two builders share these settings: :func:`make_atari_env` (one Gymnasium env with wrappers, for
evaluation, rendering and SB3's ``learn``; registered as ``heed/AtariPong-v0`` and
``heed/AtariEnduro-v0`` in :mod:`heed.envs.registration`, any game by ``make_atari_env(id)``) and :func:`make_vector_env` (ale-py's C++
``AtariVectorEnv``, several games stepped in native threads: the fast path for training).
"""

from __future__ import annotations

import gymnasium as gym

from heed.envs.errors import HeedError, suggest

FRAME_STACK = 4
SCREEN = 84


def register() -> None:
    """Make ale-py's ``ALE/...`` ids available (ale-py ships the ROMs; imported only when needed)."""
    import ale_py

    gym.register_envs(ale_py)


def atari_ids() -> list[str]:
    """Every registered ``ALE/<Game>-v5`` id."""
    register()
    return sorted(k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))


def check_atari_id(env_id: str) -> str:
    """Validate an Atari id (``ALE/Pong-v5``, ``PongNoFrameskip-v4``, or just ``Pong``) and return the v5 id.

    Raises :class:`HeedError` with close matches for an unknown or misspelt id.
    """
    register()
    ids = atari_ids()
    if env_id in ids:
        return env_id
    bare = env_id.removeprefix("ALE/").split("-")[0].removesuffix("NoFrameskip").removesuffix("Deterministic")
    candidate = f"ALE/{bare}-v5"
    if candidate in ids:
        return candidate
    raise HeedError(f"unknown Atari env id '{env_id}'.{suggest(env_id, ids + [i[4:-3] for i in ids])}")


def game_name(env_id: str) -> str:
    """``ALE/Pong-v5`` -> ``pong`` (the ROM name ale-py's vector env takes)."""
    import re

    name = check_atari_id(env_id)[4:-3]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Press FIRE after reset in games that wait for it (Breakout, ...)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


def make_atari_env(
    env_id: str = "ALE/Pong-v5",
    *,
    training: bool = False,
    render_mode: str | None = None,
    sticky_actions: float = 0.0,
    noop_max: int = 30,
    max_episode_steps: int | None = 27_000,
) -> gym.Env:
    """One Atari env with the DeepMind preprocessing; observations ``uint8 [4, 84, 84]``.

    Args:
        env_id: an ``ALE/<Game>-v5`` id (close misspellings get a suggestion).
        training: episodic life and reward clipping (the learner's view); else full
            games with unclipped reward (evaluation).
        render_mode: ``"rgb_array"`` to get the full-colour 210x160 frame from ``env.render()``.
        sticky_actions: ALE's repeat-action probability (0 as in the Nature DQN; v5's own default is 0.25).
        noop_max: at most this many no-ops at reset.
        max_episode_steps: agent steps before truncation (27,000 = 108,000 frames, 30 minutes of play).
    """
    env_id = check_atari_id(env_id)
    env = gym.make(
        env_id,
        frameskip=1,
        repeat_action_probability=sticky_actions,
        full_action_space=False,
        render_mode=render_mode,
        max_episode_steps=None if max_episode_steps is None else max_episode_steps * 4,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=4,
        screen_size=SCREEN,
        terminal_on_life_loss=training,
        grayscale_obs=True,
        scale_obs=False,
    )
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)  # as the vector env does at reset
    if training:
        env = gym.wrappers.ClipReward(env, -1.0, 1.0)
    env = gym.wrappers.FrameStackObservation(env, FRAME_STACK, padding_type="zero")  # as ale-py's vector env
    return env


def make_vector_env(
    env_id: str = "ALE/Pong-v5",
    num_envs: int = 4,
    *,
    episodic_life: bool = False,
    clip_rewards: bool = False,
    sticky_actions: float = 0.0,
    noop_max: int = 30,
    max_episode_steps: int = 27_000,
    num_threads: int = 0,
) -> gym.vector.VectorEnv:
    """ale-py's native ``AtariVectorEnv`` with the same preprocessing; observations ``uint8 [N, 4, 84, 84]``.

    heed's trainer keeps full games here (``episodic_life=False``, raw rewards) and applies the
    learner's view itself: a lost life (``info["lives"]`` drops) cuts bootstrapping, rewards are
    clipped before they enter the replay buffer, and returns are logged unclipped per game.
    FIRE is pressed at reset in games that need it.

    Autoreset is Gymnasium's default NEXT_STEP mode: the step after a terminal one returns the
    first observation of the new episode (and ignores its action).
    """
    from ale_py.vector_env import AtariVectorEnv

    if num_envs < 1:
        raise HeedError(f"num_envs must be at least 1, got {num_envs}")
    return AtariVectorEnv(
        game=game_name(env_id),
        num_envs=num_envs,
        num_threads=num_threads,
        repeat_action_probability=sticky_actions,
        max_num_frames_per_episode=max_episode_steps * 4,
        img_height=SCREEN,
        img_width=SCREEN,
        grayscale=True,
        stack_num=FRAME_STACK,
        frameskip=4,
        maxpool=True,
        noop_max=noop_max,
        episodic_life=episodic_life,
        reward_clipping=clip_rewards,
        use_fire_reset=True,
    )


def observation_is_atari(obs_shape: tuple[int, ...]) -> bool:
    """True for ``[4, 84, 84]``-shaped observations."""
    return tuple(obs_shape) == (FRAME_STACK, SCREEN, SCREEN)


__all__ = ["atari_ids", "check_atari_id", "make_atari_env", "make_vector_env", "register"]
