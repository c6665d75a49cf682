"""The env contract, run over every ``heed/`` id of the registration table (no hand-written list).

For each id: Gymnasium's ``check_env``, Stable-Baselines3's ``check_env`` (on the SB3 form: envs with
Dict actions take ``flat_actions=True``), ``gym.make(id, render_mode=None)`` and every declared render
mode but ``human``, a same-seed rollout that repeats exactly (and differs under another seed), and a
pickled env that continues exactly like the original. Then the table itself (every task of ``TASKS``
has an id) and registration in processes that never import heed (a fresh interpreter, SB3's
``SubprocVecEnv`` workers).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from heed.envs.registration import env_table, heed_ids, make_env
from heed.envs.tasks import TASKS

IDS = heed_ids()


def _make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, **kwargs)


def _sb3_kwargs(env_id: str) -> dict:
    """heed's convention: an env with a Dict action space takes ``flat_actions=True`` for SB3."""
    env = _make(env_id)
    return {"flat_actions": True} if isinstance(env.action_space, gym.spaces.Dict) else {}


def _flat(obs) -> np.ndarray:
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k], np.float64).reshape(-1) for k in sorted(obs)])
    return np.asarray(obs, np.float64).reshape(-1)


def _rollout(env: gym.Env, seed: int, steps: int = 30) -> list[np.ndarray]:
    """Observations, rewards and ends of ``steps`` seeded random steps (resetting at episode ends)."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    trace = [_flat(obs)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        trace.append(np.append(_flat(obs), [reward, terminated, truncated]))
        if terminated or truncated:
            trace.append(_flat(env.reset()[0]))
    return trace


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = _make(env_id, render_mode=None)
    assert env.render_mode is None and env.spec.id == env_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any complaint of the checker fails the test, but that it is
        warnings.filterwarnings(
            "ignore", message=".*different from the unwrapped version"
        )  # given gym.make's env
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("env_id", IDS)
def test_stable_baselines3_check_env(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape

    env = _make(env_id, **_sb3_kwargs(env_id))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 warns about spaces its algorithms cannot use, but
        # glimpses are float patches [k, g, g], not images: SB3's CombinedExtractor flattens them
        for text in (
            "It seems that your observation (space )?glimpse is an image",
            "The minimal resolution for an image",
        ):
            warnings.filterwarnings("ignore", message=text)
        sb3_check_env(env)
    assert get_action_dim(env.action_space) >= 1  # raises for action spaces SB3 has no policy for
    get_obs_shape(env.observation_space)


GLIMPSE_IDS = [i for i in IDS if "Glimpse" in i]


def test_every_glimpse_task_is_covered():
    assert {"heed/GlimpseGrid-v0", "heed/GlimpseMNIST-v0", "heed/GlimpsePairs-v0"} <= set(GLIMPSE_IDS)


@pytest.mark.parametrize("env_id", GLIMPSE_IDS)
def test_stable_baselines3_ppo_trains_on_every_glimpse_env(env_id, one_thread):
    """An unmodified SB3 PPO runs 200 steps on each glimpse env (issue 19: envs any RL library can train)."""
    from stable_baselines3 import PPO

    env = _make(env_id, **_sb3_kwargs(env_id))
    policy = "MultiInputPolicy" if isinstance(env.observation_space, gym.spaces.Dict) else "MlpPolicy"
    model = PPO(policy, env, n_steps=100, batch_size=50, n_epochs=1, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(200)
    assert model.num_timesteps == 200
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))  # it updated
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_render_modes(env_id):
    modes = [m for m in _make(env_id).metadata.get("render_modes", []) if m != "human"]
    for mode in modes:
        env = _make(env_id, render_mode=mode)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        try:
            frame = env.render()
        except gym.error.DependencyNotInstalled as exc:  # CartPole draws with pygame, an optional extra
            pytest.skip(f"{mode}: {exc}")
        if mode == "ansi":
            assert isinstance(frame, str) and frame
        else:
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_rollout_and_pickle_continues(env_id):
    a = _rollout(_make(env_id), seed=3)
    env = _make(env_id)
    b = _rollout(env, seed=3)
    assert len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))
    c = _rollout(_make(env_id), seed=4)
    assert len(a) != len(c) or not all(np.array_equal(u, v) for u, v in zip(a, c)), "the seed changes nothing"

    clone = pickle.loads(pickle.dumps(env))  # mid-episode; reset with the same seed, it replays the episode
    d = _rollout(clone, seed=3)
    assert len(a) == len(d) and all(np.array_equal(u, v) for u, v in zip(a, d))


def test_every_task_has_an_id_and_its_own_name():
    table = env_table()
    for name, task in TASKS.items():
        assert task().name == name
        assert table[task.env_id].kwargs == {"task_name": name}
    assert len(IDS) == len(set(IDS)) and all(i.startswith("heed/") for i in IDS)


def test_make_env_errors_are_one_line():
    from heed.envs.errors import HeedError

    with pytest.raises(HeedError, match="Did you mean: heed/Copy-v0"):
        make_env("heed/Cpy-v0")
    with pytest.raises(HeedError, match="bad options for 'heed/Copy-v0'"):
        make_env("heed/Copy-v0", no_such_option=1)
    with pytest.raises(HeedError, match="render_mode"):
        make_env("heed/Copy-v0", render_mode="rgb_array")


FRESH = """
import sys
import gymnasium as gym

assert "torch" not in sys.modules, "registering heed's ids imported torch"
for env_id in sys.argv[1:]:
    env = gym.make(env_id, render_mode=None)
    env.reset(seed=0)
    env.step(env.action_space.sample())
print("made", len(sys.argv) - 1)
"""


def test_ids_work_in_a_fresh_process_without_importing_heed(tmp_path):
    """After install, ``gym.make("heed/...")`` works in any process (the installed .pth + heed.envs.autoload)."""
    done = subprocess.run(
        [sys.executable, "-c", FRESH, *IDS], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"{done.stderr[-2000:]}\n(if the ids are unknown: reinstall with `pip install -e .`, which writes "
        "heed_attention_gymnasium.pth)"
    )
    assert f"made {len(IDS)}" in done.stdout


def test_ids_work_in_subproc_vec_env_workers():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    """A spawned worker is a fresh interpreter that never imports heed (one worker: each imports torch)."""
    venv = make_vec_env(
        "heed/MemoryLength-v0", n_envs=1, seed=0, env_kwargs={"memory_length": 0},
        vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "spawn"},
    )  # fmt: skip
    try:
        obs = venv.reset()
        assert obs.shape == (1, 3) and obs[0, 1] == 1.0  # the query comes with the cue
        _, reward, done, _ = venv.step(np.array([int(obs[0, 0] > 0)]))
        assert reward.tolist() == [1.0] and done.tolist() == [True]
    finally:
        venv.close()


BROKEN = """
import warnings
import heed.envs.registration as registration

def broken():
    raise RuntimeError("registration broke")

registration.register_all = broken  # heed is broken in this process, gymnasium must not be
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import gymnasium as gym
gym.make("CartPole-v1").reset(seed=0)
assert any("could not register" in str(w.message) for w in caught), [str(w.message) for w in caught]
print("ok")
"""


def test_a_broken_registration_never_breaks_import_gymnasium(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", BROKEN], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
