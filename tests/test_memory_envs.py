"""The memory environments: bsuite memory_len semantics, hidden velocities, errors (the Gymnasium
contract for every id is in tests/test_envs.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from heed.envs.errors import HeedError
from heed.envs.memory import CARTPOLE_NOVEL_ID, MEMORY_LENGTH_ID, MemoryLengthEnv, popgym_available
from heed.envs.registration import heed_ids, make_env

IDS = [MEMORY_LENGTH_ID, CARTPOLE_NOVEL_ID]


def test_ids_are_registered():
    ids = heed_ids()
    for env_id in IDS:
        assert env_id in ids


@pytest.mark.parametrize("length", [0, 1, 4])
def test_memory_length_semantics(length):
    env = gym.make(MEMORY_LENGTH_ID, memory_length=length)
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        cue = obs[0]
        assert cue in (-1.0, 1.0)
        assert obs[1] == (1.0 if length == 0 else 0.0)
        steps, answer = 0, int(cue > 0)
        while True:
            action = answer if steps == length else 1 - answer  # wrong actions before the query are ignored
            obs, reward, term, _, info = env.step(action)
            steps += 1
            if term:
                break
            assert reward == 0.0 and obs[0] == 0.0
            assert obs[1] == (1.0 if steps == length else 0.0)
            assert obs[2] == pytest.approx((length - steps) / max(length, 1))
        assert steps == length + 1 and reward == 1.0 and info["is_success"] is True
        env.reset(seed=seed)
        for _ in range(length):
            env.step(0)
        _, reward, term, _, info = env.step(1 - answer)
        assert term and reward == -1.0 and info["is_success"] is False


def test_both_cues_occur():
    env = MemoryLengthEnv(2)
    cues = {env.reset(seed=s)[0][0] for s in range(20)}
    assert cues == {-1.0, 1.0}


def test_cartpole_hides_velocities():
    env = make_env(CARTPOLE_NOVEL_ID)
    full = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=5)
    ref, _ = full.reset(seed=5)
    assert env.observation_space.shape == (2,)
    np.testing.assert_array_equal(obs, ref[[0, 2]])
    obs, *_ = env.step(1)
    ref, *_ = full.step(1)
    np.testing.assert_array_equal(obs, ref[[0, 2]])


def test_errors_are_one_line():
    with pytest.raises(HeedError, match="Did you mean: heed/MemoryLength-v0"):
        make_env("heed/MemoryLenght-v0")
    with pytest.raises(HeedError, match="memory_length"):
        make_env(MEMORY_LENGTH_ID, memory_length=-1)
    if not popgym_available():
        with pytest.raises(HeedError, match="pip install"):
            make_env("popgym-RepeatPreviousEasy-v0")
