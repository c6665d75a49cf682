"""FrameReplayBuffer against an independent reference: every transition kept whole, looked up by content.

Both ways of feeding it are checked: heed's trainer (next-step autoreset: the step after an end
only returns the reset observation) and SB3's ``learn()`` (same-step autoreset: the terminal
observation comes as ``next_obs``), each with and without priorities, 1- and 3-step returns, over
a ring that wraps several times.
"""

import numpy as np
import pytest

from heed.agents.common.errors import HeedError
from heed.agents.replay import FrameReplayBuffer, SumTree

N_ENVS, GAMMA = 3, 0.9


def frame(counter: int) -> np.ndarray:
    """A 3x3 frame that names its counter (unique over the whole stream)."""
    f = np.full((3, 3), counter % 7, np.uint8)
    f[0, 0], f[0, 1] = counter % 256, counter // 256 + 1
    return f


def stream(mode: str, steps: int, rng: np.random.Generator):
    """Feed calls for ``mode`` ("next_step" or "sb3") and the reference transitions per env.

    A reference transition is (s, a, r, terminal, boundary, s'); a fresh stack is zero-padded.
    """
    counter = iter(range(1, 10**6))

    def fresh():
        s = np.zeros((4, 3, 3), np.uint8)
        s[-1] = frame(next(counter))
        return s

    stacks = np.stack([fresh() for _ in range(N_ENVS)])
    history = {i: [] for i in range(N_ENVS)}
    calls = []
    done_prev = np.zeros(N_ENVS, dtype=bool)
    for _ in range(steps):
        actions = rng.integers(0, 6, N_ENVS)
        rewards = rng.normal(size=N_ENVS).astype(np.float32)
        term = rng.random(N_ENVS) < 0.05
        trunc = (rng.random(N_ENVS) < 0.03) & ~term
        life = (rng.random(N_ENVS) < 0.05) & ~term if mode == "next_step" else np.zeros(N_ENVS, bool)
        before = stacks.copy()
        after = np.stack([np.concatenate([s[1:], frame(next(counter))[None]]) for s in stacks])
        if mode == "next_step":
            valid = ~done_prev
            for i in np.flatnonzero(~valid):
                after[i] = fresh()
            term, trunc, life = term & valid, trunc & valid, life & valid
            calls.append(("store", before, after, actions, rewards, term | life, trunc, term | trunc, valid))
            stacks, done_prev = after, term | trunc
        else:  # SB3: the env resets on the ending step; next_obs is the terminal observation
            valid = np.ones(N_ENVS, dtype=bool)
            infos = [{"TimeLimit.truncated": bool(t)} for t in trunc]
            calls.append(("add", before, after.copy(), actions, rewards, term | trunc, infos))
            stacks = after.copy()
            for i in np.flatnonzero(term | trunc):
                stacks[i] = fresh()
        for i in np.flatnonzero(valid):
            history[i].append((before[i], actions[i], rewards[i], term[i] | life[i], term[i] | life[i] | trunc[i],
                               after[i]))
    return calls, history


@pytest.mark.parametrize("mode", ["next_step", "sb3"])
@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("n_steps", [1, 3])
def test_samples_match_reference(mode, prioritized, n_steps):
    calls, history = stream(mode, 200, np.random.default_rng(0))
    buf = FrameReplayBuffer(120, N_ENVS, (4, 3, 3), np.uint8, frame_stack=4, n_steps=n_steps, gamma=GAMMA,
                            prioritized=prioritized, seed=1)
    for call in calls:
        getattr(buf, call[0])(*call[1:])
    if prioritized:  # uneven priorities: sampling must still return only live transitions
        live = np.flatnonzero(buf.tree.get(np.arange(buf.capacity)) > 0)
        buf.update_priorities(live, np.random.default_rng(2).random(len(live)) + 0.1)
    lookup = {h[0].tobytes(): (i, k) for i in range(N_ENVS) for k, h in enumerate(history[i])}
    batch = buf.sample(256, beta=0.5)
    assert batch.observations.shape == (256, 4, 3, 3)
    for b in range(256):
        env, k = lookup[batch.observations[b].numpy().tobytes()]  # KeyError: a stack that never existed
        assert batch.indices[b] % N_ENVS == env
        seq = history[env]
        assert int(batch.actions[b]) == seq[k][1]
        ret, disc, j = 0.0, 1.0, k  # n-step reference: walk forward in the env's own history
        for step in range(n_steps):
            ret += disc * seq[j][2]
            disc *= GAMMA
            if seq[j][4] or step == n_steps - 1 or j + 1 >= len(seq):
                break
            j += 1
        assert batch.rewards[b, 0].item() == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch.discounts[b, 0].item() == pytest.approx(disc, rel=1e-5)
        np.testing.assert_array_equal(batch.next_observations[b].numpy(), seq[j][5])
        assert batch.dones[b, 0].item() == float(seq[j][3])
    if prioritized:
        assert batch.weights is not None and float(batch.weights.max()) == pytest.approx(1.0)
    else:
        assert batch.weights is None


def test_vector_observations_without_frame_stack():
    buf = FrameReplayBuffer(50, 1, (2,), np.float32, n_steps=1, gamma=0.5, seed=0)
    obs = np.array([[0.0, 0.0]], np.float32)
    for t in range(1, 6):
        nxt = np.array([[t, -t]], np.float32)
        buf.store(obs, nxt, np.array([t % 2]), np.array([float(t)]), np.array([t == 5]), np.array([False]))
        obs = nxt
    batch = buf.sample(64)
    r = batch.rewards[:, 0].numpy()
    np.testing.assert_array_equal(batch.observations[:, 0].numpy(), r - 1)  # s = obs of step t - 1
    np.testing.assert_array_equal(batch.next_observations[:, 0].numpy(), r)
    np.testing.assert_array_equal(batch.dones[:, 0].numpy(), (r == 5).astype(np.float32))
    assert set(r.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_sum_tree_refuses_non_finite_priorities(bad):
    tree = SumTree(4)
    tree.update(np.arange(4), np.ones(4))
    with pytest.raises(HeedError, match="priority"):
        tree.update(np.array([2]), np.array([bad]))
    assert tree.total == 4.0  # untouched: sampling still terminates
    assert set(tree.sample(16, np.random.default_rng(0)).tolist()) <= {0, 1, 2, 3}


def test_nan_td_error_stops_prioritized_buffer_with_one_error():
    buf = FrameReplayBuffer(20, 1, (2,), np.float32, prioritized=True, seed=0)
    for _ in range(5):
        buf.store(np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32), np.array([0]), np.array([1.0]),
                  np.array([False]), np.array([False]))
    batch = buf.sample(4)
    with pytest.raises(HeedError, match="diverged"):
        buf.update_priorities(batch.indices, np.full(4, np.nan))
    assert np.isfinite(buf.max_priority)
    buf.sample(4)  # still samples (no endless loop)
