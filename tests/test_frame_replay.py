"""FrameReplayBuffer against an independent reference: full stacked observations kept per step."""

import numpy as np
import pytest

from heed.agents.frame_replay import FrameReplayBuffer


def fake_episode_stream(n_envs, steps, rng, p_end=0.05, p_life=0.05):
    """Yields vector steps with NEXT_STEP autoreset semantics and zero-padded reset stacks."""
    stacks = np.zeros((n_envs, 4, 3, 3), dtype=np.uint8)
    counter = 1

    def fresh():
        nonlocal counter
        s = np.zeros((4, 3, 3), dtype=np.uint8)
        s[-1] = counter % 250 + 1
        counter += 1
        return s

    for i in range(n_envs):
        stacks[i] = fresh()
    yield "reset", stacks.copy(), None
    done_prev = np.zeros(n_envs, dtype=bool)
    for _ in range(steps):
        actions = rng.integers(0, 6, n_envs)
        rewards = rng.normal(size=n_envs).astype(np.float32)
        term = rng.random(n_envs) < p_end
        trunc = (rng.random(n_envs) < p_end / 2) & ~term
        life = (rng.random(n_envs) < p_life) & ~term
        for i in range(n_envs):
            if done_prev[i]:
                stacks[i] = fresh()
                term[i] = trunc[i] = life[i] = False
            else:
                stacks[i] = np.concatenate([stacks[i, 1:], np.full((1, 3, 3), counter % 250 + 1, np.uint8)])
                counter += 1
        yield "step", stacks.copy(), (actions, rewards, term, trunc, life, done_prev.copy())
        done_prev = term | trunc


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("n_steps", [1, 3])
def test_samples_match_reference(prioritized, n_steps):
    rng = np.random.default_rng(0)
    n_envs, gamma = 3, 0.9
    buf = FrameReplayBuffer(120, n_envs, frame_shape=(3, 3), n_steps=n_steps, gamma=gamma,
                            prioritized=prioritized, seed=1)
    # reference: per env, list of (obs, action, reward, terminal, boundary, next_obs, global row)
    history = {i: [] for i in range(n_envs)}
    prev = None
    for g, (kind, obs, data) in enumerate(fake_episode_stream(n_envs, 200, rng)):
        if kind == "reset":
            buf.add_reset(obs)
        else:
            actions, rewards, term, trunc, life, start = data
            buf.add(obs, actions, rewards, term | life, trunc, start)
            for i in range(n_envs):
                if not start[i]:
                    history[i].append((prev[i], actions[i], rewards[i], term[i] | life[i],
                                       term[i] | life[i] | trunc[i], obs[i], g))
        prev = obs
    lookup = {(h[6], i): (k, h) for i in range(n_envs) for k, h in enumerate(history[i])}
    batch = buf.sample(256)
    rows = buf.written - 1 - ((((buf.written - 1) % buf.rows) - batch.indices // n_envs) % buf.rows)
    envs = batch.indices % n_envs
    assert batch.observations.shape == (256, 4, 3, 3)
    for b in range(256):
        k, h = lookup[(int(rows[b]), int(envs[b]))]
        np.testing.assert_array_equal(batch.observations[b].numpy(), h[0])
        assert int(batch.actions[b]) == h[1]
        # n-step reference: walk forward in the env's own history
        ret, disc, j = 0.0, 1.0, k
        seq = history[int(envs[b])]
        for step in range(n_steps):
            if j >= len(seq) or (step > 0 and seq[j][6] != seq[j - 1][6] + 1):
                j -= 1
                break
            ret += disc * seq[j][2]
            disc *= gamma
            if seq[j][4] or step == n_steps - 1:
                break
            j += 1
        last = seq[min(j, len(seq) - 1)]
        assert batch.rewards[b, 0].item() == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch.discounts[b, 0].item() == pytest.approx(disc, rel=1e-5)
        np.testing.assert_array_equal(batch.next_observations[b].numpy(), last[5])
        assert batch.dones[b, 0].item() == float(last[3])
    if prioritized:
        assert batch.weights is not None and float(batch.weights.max()) == pytest.approx(1.0)
