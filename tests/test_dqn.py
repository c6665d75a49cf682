"""Dueling / Double DQN: the network identity, the target, prioritized replay, learning, save/load, determinism."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from heed.agents.dqn import DuelingDQN, load_q_network, save_q_network
from heed.agents.networks import build_q_network
from heed.agents.replay import PrioritizedReplayBuffer, SumTree


class Corridor(gym.Env):
    """Walk right along 8 cells to reach +1; each step costs 0.01; 20 steps at most."""

    def __init__(self, length: int = 8):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        o = np.zeros(self.length, np.float32)
        o[self.pos] = 1.0
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.pos = int(np.clip(self.pos + (1 if action == 1 else -1), 0, self.length - 1))
        done = self.pos == self.length - 1
        return self._obs(), (1.0 if done else -0.01), done, self.t >= 20, {}


def test_dueling_identity_mean_q_is_v():
    torch.manual_seed(0)
    for shape, n in [((4, 84, 84), 6), ((5,), 3)]:
        net = build_q_network(shape, n)
        x = torch.rand(7, *shape) * (255 if len(shape) == 3 else 1)
        q = net(x)
        v, a = net.streams(x)
        torch.testing.assert_close(q.mean(dim=1, keepdim=True), v, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(q, v + a - a.mean(dim=1, keepdim=True))
        torch.testing.assert_close(net.value(x), v)
        torch.testing.assert_close(net.advantage(x), a)


def test_double_dqn_target_by_hand():
    model = DuelingDQN("MlpPolicy", Corridor(), gamma=0.9, learning_starts=0, seed=0)
    online = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
    target = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    model.q_net.forward = lambda obs: online  # hand-built batch: fixed Q-values
    model.q_net_target.forward = lambda obs: target
    rewards = torch.tensor([[1.0], [2.0]])
    dones = torch.tensor([[0.0], [1.0]])
    y = model.td_targets(rewards, torch.zeros(2, 8), dones, 0.9)
    # row 0: online picks action 1 -> target scores 20 -> 1 + 0.9 * 20; row 1 is terminal -> 2
    torch.testing.assert_close(y, torch.tensor([[19.0], [2.0]]))
    model.double_q = False  # vanilla DQN: the target net both picks and scores (max = 20)
    torch.testing.assert_close(model.td_targets(rewards, torch.zeros(2, 8), dones, 0.9), torch.tensor([[19.0], [2.0]]))
    target[0] = torch.tensor([25.0, 20.0])  # now the two rules disagree on row 0
    model.double_q = True
    assert model.td_targets(rewards, torch.zeros(2, 8), dones, 0.9)[0, 0].item() == pytest.approx(1 + 0.9 * 20)
    model.double_q = False
    assert model.td_targets(rewards, torch.zeros(2, 8), dones, 0.9)[0, 0].item() == pytest.approx(1 + 0.9 * 25)


def test_sum_tree_sampling_is_proportional():
    tree = SumTree(5)
    p = np.array([1.0, 0.0, 3.0, 6.0, 10.0])
    tree.update(np.arange(5), p)
    assert tree.total == pytest.approx(p.sum())
    idx = np.concatenate([tree.sample(64, np.random.default_rng(s)) for s in range(300)])
    freq = np.bincount(idx, minlength=5) / len(idx)
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.01)
    assert freq[1] == 0.0


def test_prioritized_buffer_probabilities_and_weights():
    space = gym.spaces.Box(0, 1, (2,), np.float32)
    buf = PrioritizedReplayBuffer(8, space, gym.spaces.Discrete(2), alpha=0.5)
    for i in range(4):
        buf.add(np.full((1, 2), i, np.float32), np.full((1, 2), i, np.float32), np.array([[0]]),
                np.array([float(i)]), np.array([False]), [{}])
    prios = np.array([1.0, 4.0, 9.0, 16.0])
    buf.update_priorities(np.arange(4), prios)
    expected = prios**0.5 / (prios**0.5).sum()
    buf.beta = 0.7
    counts = np.zeros(4)
    for s in range(400):
        buf.rng = np.random.default_rng(s)
        batch = buf.sample(32)
        counts += np.bincount(batch.indices, minlength=4)
        w_expected = (4 * expected[batch.indices]) ** -0.7
        np.testing.assert_allclose(batch.weights.squeeze(1).numpy(), w_expected / w_expected.max(), rtol=1e-5)
        np.testing.assert_array_equal(batch.rewards.squeeze(1).numpy(), batch.indices.astype(np.float32))
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.01)


def corridor_model(seed: int, **kw) -> DuelingDQN:
    return DuelingDQN(
        "MlpPolicy", Corridor(), learning_rate=2e-3, buffer_size=5000, learning_starts=200, batch_size=32,
        gamma=0.95, train_freq=1, target_update_interval=100, exploration_fraction=0.4,
        exploration_final_eps=0.05, policy_kwargs={"net_arch": [32]}, seed=seed, **kw,
    )


def greedy_return(model) -> float:
    env = Corridor()
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, _ = env.step(int(action))
        total += r
        done = term or trunc
    return total


@pytest.mark.parametrize("kw", [{}, {"prioritized": True, "n_steps": 3}])
def test_learns_corridor_within_few_thousand_steps(kw):
    torch.set_num_threads(1)
    model = corridor_model(0, **kw)
    model.learn(3000)
    # optimal: 7 steps right -> 1 - 6 * 0.01 = 0.94
    assert greedy_return(model) == pytest.approx(0.94)


def test_same_seed_same_first_losses():
    torch.set_num_threads(1)
    losses = []
    for _ in range(2):
        model = corridor_model(3)
        model.learn(400)
        losses.append((model.last_td_loss, [p.detach().clone() for p in model.q_net.parameters()]))
    assert losses[0][0] == losses[1][0]
    for a, b in zip(losses[0][1], losses[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_save_load_identical_q_values(tmp_path):
    torch.manual_seed(0)
    net = build_q_network((4, 84, 84), 6)
    x = torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8)
    save_q_network(tmp_path / "agent", net, "ALE/Pong-v5")
    loaded, meta = load_q_network(tmp_path / "agent")
    assert meta["config"]["env_id"] == "ALE/Pong-v5"
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    # fp16 shipping keeps Q-values close
    save_q_network(tmp_path / "half", net, "ALE/Pong-v5", dtype=torch.float16)
    half, _ = load_q_network(tmp_path / "half")
    torch.testing.assert_close(half(x), net(x), rtol=1e-2, atol=1e-2)


def test_sb3_save_load_roundtrip(tmp_path):
    model = corridor_model(1)
    model.learn(300)
    model.save(tmp_path / "m.zip")
    loaded = DuelingDQN.load(tmp_path / "m.zip")
    obs = torch.eye(8)
    torch.testing.assert_close(loaded.q_net(obs), model.q_net(obs))
    assert type(loaded.q_net).__name__ == "DuelingQNetwork"
