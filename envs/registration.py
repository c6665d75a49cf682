"""The one table of ``heed/...`` Gymnasium ids, and :func:`make_env`.

:data:`ENVS` maps every id to its entry point and keyword arguments: the supervised sequence tasks
come from :data:`heed.envs.tasks.TASKS` (each task's ``env_id``, stepped by
:class:`heed.envs.sequence_env.SequenceTaskEnv`); the memory, glimpse and Atari ids are listed here.
A new env is one line below (a new task is one line in ``TASKS``); ``tests/test_envs.py`` then runs
the env contract over it.

After ``pip install`` the ids are known in every Python process, SB3's ``SubprocVecEnv`` workers
included, without importing heed: the wheel installs ``heed_attention_gymnasium.pth``, which installs
:mod:`heed.envs.autoload`, which calls :func:`register_all` right after ``gymnasium`` is imported
(Gymnasium 1.x has no plugin loader for the ``gymnasium.envs`` entry point any more). ``import
heed.envs`` does the same by hand. :func:`register_all` is idempotent and imports neither torch nor
any env: entry points are strings, loaded by ``gym.make``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from heed.envs.errors import HeedError, suggest

if TYPE_CHECKING:
    from collections.abc import Mapping

    import gymnasium as gym

SEQUENCE_ENV = "heed.envs.sequence_env:SequenceTaskEnv"
GLIMPSE_ENV = "heed.envs.glimpse:GlimpseEnv"
ATARI_ENV = "heed.envs.atari:make_atari_env"


@dataclass(frozen=True)
class EnvEntry:
    """How ``gym.make`` builds one id: ``entry_point(**kwargs, **user_kwargs)``."""

    entry_point: str
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    max_episode_steps: int | None = None  # a TimeLimit added by gym.make (None: the env ends its episodes)


def _table() -> dict[str, EnvEntry]:
    from heed.envs.tasks import TASKS

    tasks = {task.env_id: EnvEntry(SEQUENCE_ENV, {"task_name": name}) for name, task in TASKS.items()}
    return {
        **tasks,
        # memory probes for recurrent policies (envs/memory.py)
        "heed/MemoryLength-v0": EnvEntry("heed.envs.memory:MemoryLengthEnv"),
        "heed/CartPoleNoVel-v0": EnvEntry("heed.envs.memory:make_cartpole_novel"),
        # glimpse classification (envs/glimpse.py)
        "heed/GlimpseMNIST-v0": EnvEntry(GLIMPSE_ENV, {"dataset": "mnist", "glimpses": 6}),
        "heed/GlimpseTranslated60-v0": EnvEntry(GLIMPSE_ENV, {"dataset": "translated60", "glimpses": 8}),
        "heed/GlimpseCluttered60-v0": EnvEntry(GLIMPSE_ENV, {"dataset": "cluttered60", "glimpses": 8}),
        "heed/GlimpseCluttered100-v0": EnvEntry(GLIMPSE_ENV, {"dataset": "cluttered100", "glimpses": 8}),
        "heed/GlimpseGrid-v0": EnvEntry(GLIMPSE_ENV, {"dataset": "mnist", "glimpses": 4, "grid": True}),
        "heed/GlimpsePairs-v0": EnvEntry(GLIMPSE_ENV, {"dataset": "mnist-pairs", "glimpses": 8}),
        # online handwriting recognition, one pen point per step, scored by edit distance (envs/pen_env.py)
        "heed/PenRecognition-v0": EnvEntry("heed.envs.pen_env:PenRecognitionEnv"),
        # Atari with the DeepMind preprocessing, as heed's DQN agents see it (envs/atari.py)
        "heed/AtariPong-v0": EnvEntry(ATARI_ENV, {"env_id": "ALE/Pong-v5"}),
        "heed/AtariEnduro-v0": EnvEntry(ATARI_ENV, {"env_id": "ALE/Enduro-v5"}),
    }


_ENVS: dict[str, EnvEntry] | None = None


def env_table() -> Mapping[str, EnvEntry]:
    """Every ``heed/...`` id and how to build it (read-only)."""
    global _ENVS
    if _ENVS is None:
        _ENVS = _table()
    return MappingProxyType(_ENVS)


def register_all() -> None:
    """Register every id of :func:`env_table` with Gymnasium (idempotent; ids already there are kept)."""
    from gymnasium.envs.registration import register, registry

    for env_id, entry in env_table().items():
        if env_id not in registry:
            register(
                env_id,
                entry_point=entry.entry_point,
                kwargs=dict(entry.kwargs),
                max_episode_steps=entry.max_episode_steps,
            )


def heed_ids() -> list[str]:
    """Every ``heed/...`` id, sorted (from the table: what the contract tests run over)."""
    return sorted(env_table())


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` with one-line errors (:class:`HeedError`) for an unknown id (with
    suggestions), bad options, and POPGym ids when the optional extra is missing. ``ALE/...`` ids work too."""
    import gymnasium as gym

    from heed.envs.memory import popgym_available, require_popgym

    register_all()
    if env_id.startswith("ALE/"):
        from heed.envs.atari import register as register_ale

        register_ale()
    if env_id.lower().startswith("popgym"):
        require_popgym(env_id)
    elif popgym_available():
        import popgym  # noqa: F401  (importing popgym registers its popgym-<Env>-v0 ids)
    if env_id not in gym.registry:
        known = [k for k in gym.registry if k.startswith(("heed/", "popgym", "CartPole", "ALE/"))]
        raise HeedError(f"unknown environment '{env_id}'.{suggest(env_id, known)}")
    try:
        return gym.make(env_id, **kwargs)
    except (TypeError, ValueError) as exc:
        raise HeedError(f"bad options for '{env_id}': {exc}") from None
    except gym.error.DependencyNotInstalled as exc:
        raise HeedError(f"'{env_id}' needs a package that is not installed: {exc}") from None
