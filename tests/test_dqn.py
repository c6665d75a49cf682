"""Dueling / Double DQN: the network identity, the target, the schedules, prioritized replay, learning in
both shapes (SB3's learn() and heed's trainer), save/load, determinism."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from heed.agents.dqn import (
    DuelingDQN,
    linear_schedule,
    load_q_network,
    save_q_network,
    target_update_due,
    td_targets,
    update_target,
)
from heed.agents.networks import build_q_network
from heed.agents.replay import FrameReplayBuffer, SumTree


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


def register_corridor() -> None:
    if "heedtest/Corridor-v0" not in gym.registry:
        gym.register("heedtest/Corridor-v0", entry_point=Corridor)


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
    online = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
    target = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    rewards = torch.tensor([[1.0], [2.0]])
    dones = torch.tensor([[0.0], [1.0]])

    def y(double_q):
        return td_targets(lambda obs: online, lambda obs: target, rewards, torch.zeros(2, 8), dones, 0.9, double_q)

    # row 0: online picks action 1 -> target scores 20 -> 1 + 0.9 * 20; row 1 is terminal -> 2
    torch.testing.assert_close(y(True), torch.tensor([[19.0], [2.0]]))
    # vanilla DQN: the target net both picks and scores (max = 20)
    torch.testing.assert_close(y(False), torch.tensor([[19.0], [2.0]]))
    target[0] = torch.tensor([25.0, 20.0])  # now the two rules disagree on row 0
    assert y(True)[0, 0].item() == pytest.approx(1 + 0.9 * 20)
    assert y(False)[0, 0].item() == pytest.approx(1 + 0.9 * 25)


def test_schedules_and_target_update():
    assert linear_schedule(0, 1.0, 0.1, 100) == 1.0
    assert linear_schedule(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert linear_schedule(500, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert linear_schedule(5, 1.0, 0.1, 0) == pytest.approx(0.1)
    # a vector step of 3 agent steps, target sync every 4 agent steps: due when a multiple of 4 is crossed
    assert [s for s in range(3, 24, 3) if target_update_due(s - 3, s, 4)] == [6, 9, 12, 18, 21]
    a, b = build_q_network((3,), 2), build_q_network((3,), 2)
    before = [p.detach().clone() for p in b.parameters()]
    update_target(a, b, tau=0.5)
    for pa, pb, p0 in zip(a.parameters(), b.parameters(), before):
        torch.testing.assert_close(pb, 0.5 * pa + 0.5 * p0)
    update_target(a, b)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=0)


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
    buf = FrameReplayBuffer(8, 1, (2,), np.float32, prioritized=True, alpha=0.5, seed=0)
    for i in range(4):  # one start row, then transitions with reward i at leaves 1..4
        buf.store(np.full((1, 2), i, np.float32), np.full((1, 2), i + 1, np.float32), np.array([0]),
                  np.array([float(i)]), np.array([False]), np.array([False]))
    prios = np.array([1.0, 4.0, 9.0, 16.0])
    buf.update_priorities(np.arange(1, 5), prios)
    expected = prios**0.5 / (prios**0.5).sum()
    counts = np.zeros(4)
    for s in range(400):
        buf.rng = np.random.default_rng(s)
        batch = buf.sample(32, beta=0.7)
        i = batch.indices - 1
        counts += np.bincount(i, minlength=4)
        w_expected = (4 * expected[i]) ** -0.7
        np.testing.assert_allclose(batch.weights.squeeze(1).numpy(), w_expected / w_expected.max(), rtol=1e-5)
        np.testing.assert_array_equal(batch.rewards.squeeze(1).numpy(), i.astype(np.float32))
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.01)


def corridor_model(seed: int, n_envs: int = 1, **kw) -> DuelingDQN:
    from stable_baselines3.common.env_util import make_vec_env

    env = Corridor() if n_envs == 1 else make_vec_env(Corridor, n_envs=n_envs, seed=seed)
    return DuelingDQN(
        "MlpPolicy", env, learning_rate=2e-3, buffer_size=5000, learning_starts=200, batch_size=32,
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


@pytest.mark.parametrize("kw", [{}, {"prioritized": True, "n_steps": 3}, {"prioritized": True, "n_envs": 2}])
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


def test_trainer_learns_corridor_from_a_gymnasium_id(tmp_path):
    """The fast shape, on a registered non-Atari id: an MLP, gym.make_vec, the same mechanisms."""
    from heed.agents.common.session import RunConfig
    from heed.agents.trainers import dqn as trainer

    register_corridor()
    cfg = trainer.Config(env="heedtest/Corridor-v0", total_steps=3000, num_envs=2, buffer_size=5000,
                         learning_starts=200, batch_size=32, learning_rate=2e-3, gamma=0.95, n_steps=3,
                         prioritized=True, train_freq=1, target_update_interval=100, exploration_steps=1200,
                         final_epsilon=0.05, eval_interval=0, eval_episodes=1, checkpoint_interval=0,
                         run=RunConfig(seed=0, device="cpu", run_dir=tmp_path / "c", threads=1, progress=False))
    run = trainer.main(cfg)
    net, meta = load_q_network(run)
    assert meta["config"]["env_id"] == "heedtest/Corridor-v0" and meta["config"]["obs_shape"] == [8]
    env = Corridor()
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, r, term, trunc, _ = env.step(int(net(torch.as_tensor(obs[None])).argmax()))
        total, done = total + r, term or trunc
    assert total == pytest.approx(0.94)


def test_from_checkpoint_matches_heed_network(tmp_path):
    torch.manual_seed(0)
    net = build_q_network((8,), 2, [32])
    register_corridor()
    save_q_network(tmp_path / "agent", net, "heedtest/Corridor-v0")
    model = DuelingDQN.from_checkpoint(tmp_path / "agent", device="cpu")
    obs = torch.eye(8)
    torch.testing.assert_close(model.q_net(obs), net(obs))
    torch.testing.assert_close(model.q_net_target(obs), net(obs))
    actions, _ = model.predict(obs.numpy(), deterministic=True)
    np.testing.assert_array_equal(actions, net(obs).argmax(dim=1).numpy())


def test_bench_dqn_update_ablation_runs_tiny():
    from heed.scripts.bench_dqn import Config, main

    table = main(Config(ablation=True, rounds=1, buffer_size=2000, warmup=100))
    rows = [line for line in table.splitlines() if line.startswith("| ") and "variant" not in line]
    assert len(rows) == 4 and "1.00×" in rows[0]


def test_folded_pixel_scale_matches_sb3_normalisation():
    """conv(x, W / 255) in the trunk gives SB3's conv(x / 255, W) up to float rounding, uint8 or float input."""
    torch.manual_seed(0)
    net = build_q_network((4, 84, 84), 6).to(memory_format=torch.channels_last)
    x = torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8)
    reference = net.extract_features(x, net.features_extractor)  # SB3's path: x.float() / 255, then the CNN
    torch.testing.assert_close(net.features(x), reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(net.features(net.prepare_obs(x)), reference, atol=1e-6, rtol=1e-5)
    xf = x.float().requires_grad_(True)
    net.value(xf).sum().backward()
    assert xf.grad is not None and xf.grad.abs().sum() > 0  # saliency still reaches the pixels


@pytest.mark.parametrize("scale", [1e-3, 1e4])  # below and above the clip threshold
def test_clip_grad_norm_is_bit_identical_to_torch(scale):
    from heed.agents.dqn import clip_grad_norm

    torch.manual_seed(0)
    a = build_q_network((5,), 3)
    b = build_q_network((5,), 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(8, 5)
    for net in (a, b):
        (net(x).sum() * scale).backward()
    norm = clip_grad_norm(list(a.parameters()), 10.0)
    expected = torch.nn.utils.clip_grad_norm_(b.parameters(), 10.0)
    assert torch.equal(norm, expected)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters()))
