"""Recurrent PPO: the GRU core, rollout storage, reset semantics, causality, learning, trainer, save/load."""

from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import numpy as np
import pytest
import torch

from heed.agents.common.checkpoint import save_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.cores.base import map_state
from heed.agents.cores.gru import GRUConfig, GRUCore
from heed.agents.cores.ntm import NTMConfig
from heed.agents.parts import CORES
from heed.agents.ppo import PPOConfig, RecurrentPPO, RolloutStorage
from heed.agents.recurrent_policy import RecurrentActorCritic, log_prob_entropy
from heed.agents.trainers import ppo as trainer

SMALL = {"hidden_size": 8, "memory_size": 6, "memory_width": 4, "max_steps": 4}


def small_core(core: str, **kw):
    """PPO's config of ``core`` with the tiny sizes above where it has such fields."""
    cfg = trainer.core_config(core)
    fields = {f.name for f in dataclasses.fields(cfg) if f.init}
    return dataclasses.replace(cfg, **{k: v for k, v in SMALL.items() if k in fields}, **kw)


pytestmark = pytest.mark.usefixtures("one_thread")


def _policy(core: str, obs_dim: int = 3, n_actions: int = 2, **kw) -> RecurrentActorCritic:
    torch.manual_seed(0)
    return RecurrentActorCritic(obs_dim, n_actions, small_core(core, **kw))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_gru_step_matches_numpy_and_fused_unroll():
    torch.manual_seed(0)
    core = GRUCore(3, GRUConfig(hidden_size=5, learn_initial_state=True))
    with torch.no_grad():
        core.h0.normal_()
    x = torch.randn(2, 4, 3)
    W_ih, W_hh = core.gru.weight_ih_l0.detach().numpy(), core.gru.weight_hh_l0.detach().numpy()
    b_ih, b_hh = core.gru.bias_ih_l0.detach().numpy(), core.gru.bias_hh_l0.detach().numpy()
    h = np.tile(core.h0.detach().numpy(), (2, 1))
    ref = []
    for t in range(4):  # the GRU equations as a plain numpy loop
        gi, gh = x[:, t].numpy() @ W_ih.T + b_ih, h @ W_hh.T + b_hh
        r = _sigmoid(gi[:, :5] + gh[:, :5])
        z = _sigmoid(gi[:, 5:10] + gh[:, 5:10])
        n = np.tanh(gi[:, 10:] + r * gh[:, 10:])
        h = (1 - z) * n + z * h
        ref.append(h)
    fused, state, _ = core.unroll(x)
    stepped, _, _ = core.unroll(x, resets=torch.zeros(2, 4, dtype=torch.bool))
    np.testing.assert_allclose(fused.detach().numpy(), np.stack(ref, 1), atol=1e-5)
    np.testing.assert_allclose(stepped.detach().numpy(), np.stack(ref, 1), atol=1e-5)
    np.testing.assert_allclose(state.h.detach().numpy(), ref[-1], atol=1e-5)


class _OddState(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor
    c: None


def test_storage_returns_each_stored_state_exactly():
    N, T = 3, 5
    example = _OddState(torch.zeros(N, 2), torch.zeros(N, 4, 3), None)
    st = RolloutStorage(N, T, 2, example, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    states = [_OddState(torch.randn(N, 2, generator=g), torch.randn(N, 4, 3, generator=g), None) for _ in range(T)]
    for t, s in enumerate(states):
        z = torch.zeros(N)
        st.add(t, torch.randn(N, 2), s, torch.zeros(N, dtype=torch.bool), torch.zeros(N, dtype=torch.long), z, z, z, z)
    for t, s in enumerate(states):
        got = st.state_at(t)
        assert got.c is None
        assert torch.equal(got.a, s.a) and torch.equal(got.b, s.b)
    for mb in st.minibatches(seq_len=1, n_minibatches=2, generator=g):
        for b in range(mb["obs"].shape[0]):  # each sequence's start state is the stored one
            matches = [t for t in range(T) for n in range(N) if torch.equal(mb["obs"][b, 0], st.obs[n, t])
                       and torch.equal(mb["state"].b[b], states[t].b[n])]
            assert matches


@pytest.mark.parametrize("core", ["lstm", "ntm", "dnc"])
def test_rollout_replays_exactly_from_stored_states(core):
    """Unrolling the stored sequence from the stored start state with the stored resets gives the
    rollout's own log-probs and values: the storage keeps every state of any core exactly."""
    env = trainer.make_vec_env("heed/MemoryLength-v0", 3, 0, {"memory_length": 2})
    model = RecurrentPPO(_policy(core), env, PPOConfig(n_steps=8, seq_len=4), seed=0)
    model.collect_rollout()
    model.collect_rollout()  # the second rollout starts mid-episode from a carried state
    st = model.storage
    with torch.no_grad():
        for t0 in (0, 4):
            out = model.policy.unroll(st.obs[:, t0 : t0 + 4], st.state_at(t0), st.episode_starts[:, t0 : t0 + 4])
            logp, _ = log_prob_entropy(out.logits, st.actions[:, t0 : t0 + 4], "discrete")
            torch.testing.assert_close(out.values, st.values[:, t0 : t0 + 4], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(logp, st.log_probs[:, t0 : t0 + 4], atol=1e-5, rtol=1e-5)
    assert st.episode_starts.any() and not st.episode_starts.all()


@pytest.mark.parametrize("core", ["gru", "lstm"])
def test_reset_restores_learned_initial_state_and_trains_it(core):
    policy = _policy(core, learn_initial_state=True)
    with torch.no_grad():
        for p in (policy.core.h0, getattr(policy.core, "c0", policy.core.h0)):
            p.normal_()
    obs = torch.randn(2, 6, 3)
    starts = torch.zeros(2, 6, dtype=torch.bool)
    starts[0, 3] = True  # row 0 starts a new episode at t = 3
    out = policy.unroll(obs, None, starts)
    fresh = policy.unroll(obs[:, 3:], None, None)
    torch.testing.assert_close(out.logits[0, 3:], fresh.logits[0], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out.logits[1, 3:], fresh.logits[1])  # no reset: memory carried on
    # the step-by-step path agrees, and a reset sends gradient into the learned initial state
    state = policy.initial_state(2)
    for t in range(6):
        step = policy.step(obs[:, t], state, starts[:, t])
        torch.testing.assert_close(step.logits, out.logits[:, t], atol=1e-6, rtol=1e-6)
        state = step.state
    policy.zero_grad()
    out.values[0, 4].backward()
    grad = policy.core.h0.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("core", list(CORES))
def test_jacobian_wrt_future_observations_is_zero(core):
    policy = _policy(core).double()
    obs = torch.randn(1, 6, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda x: policy.unroll(x, None, None).logits, obs)  # [1,T,A,1,T,D]
    norms = jac[0, :, :, 0].abs().sum(dim=(1, 3))  # [T_out, T_in]
    future = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    assert torch.all(norms[future] == 0)
    assert torch.all(norms.diagonal() > 0)
    past = torch.tril(torch.ones(6, 6, dtype=torch.bool), diagonal=-1)
    if core == "mlp":
        assert torch.all(norms[past] == 0)
    else:
        assert norms[past].max() > 0


def _train(core: str, steps: int = 4096, seed: int = 0) -> float:
    torch.manual_seed(seed)
    env = trainer.make_vec_env("heed/MemoryLength-v0", 16, seed, {"memory_length": 3})
    policy = RecurrentActorCritic(3, 2, dataclasses.replace(trainer.core_config(core), hidden_size=16))
    model = RecurrentPPO(policy, env, PPOConfig(n_steps=16, n_minibatches=1, learning_rate=5e-3), seed=seed)
    model.learn(steps)
    return trainer.evaluate(model, "heed/MemoryLength-v0", {"memory_length": 3}, 64, seed=123, n_envs=16)["success_rate"]


def test_recurrent_policy_solves_a_memory_length_a_feedforward_policy_cannot():
    assert _train("gru") >= 0.95
    assert _train("mlp", steps=2048) <= 0.75  # without memory the answer is a coin flip


def test_same_seed_same_training():
    def params(seed):
        env = trainer.make_vec_env("heed/MemoryLength-v0", 4, seed, {"memory_length": 2})
        model = RecurrentPPO(_policy("gru"), env, PPOConfig(n_steps=8, n_minibatches=2, n_epochs=2), seed=seed)
        model.learn(64)
        return torch.cat([p.detach().flatten() for p in model.policy.parameters()])

    assert torch.equal(params(3), params(3))


def test_save_load_round_trip(tmp_path):
    env = trainer.make_vec_env("heed/MemoryLength-v0", 2, 0, {"memory_length": 2}, norm_obs=True)
    ntm = NTMConfig(hidden_size=8, memory_size=6, memory_width=4)
    model = RecurrentPPO(RecurrentActorCritic(3, 2, ntm), env, PPOConfig(n_steps=8))
    model.learn(16)
    model.save(str(tmp_path / "ckpt"))
    env2 = trainer.make_vec_env("heed/MemoryLength-v0", 2, 0, {"memory_length": 2}, norm_obs=True)
    loaded = RecurrentPPO.load(str(tmp_path / "ckpt"), env=env2)
    assert loaded.policy.core_cfg == ntm  # the core's config travels in the checkpoint
    assert loaded.num_timesteps == model.num_timesteps == 16
    np.testing.assert_array_equal(env2.obs_rms.mean, env.obs_rms.mean)
    obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    with torch.no_grad():
        a = model.policy.step(torch.as_tensor(env.normalize_obs(obs)), model.policy.initial_state(2), torch.ones(2, dtype=torch.bool))
        b = loaded.policy.step(torch.as_tensor(env2.normalize_obs(obs)), loaded.policy.initial_state(2), torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(a.logits, b.logits)
    save_checkpoint(tmp_path / "other", {"w": torch.zeros(1)}, {"kind": "dqn"})
    with pytest.raises(HeedError, match="not ppo"):
        RecurrentPPO.load(str(tmp_path / "other"))


def test_time_limit_truncation_is_bootstrapped():
    env = trainer.make_vec_env("heed/MemoryLength-v0", 2, 0, {"memory_length": 10, "max_episode_steps": 3})
    model = RecurrentPPO(_policy("gru"), env, PPOConfig(n_steps=6), seed=0)
    model.collect_rollout()
    st = model.storage
    cut = st.dones.bool()
    assert cut[:, 2].all() and cut[:, 5].all() and cut.sum() == 4  # every third step is a time-limit cut
    assert torch.all(st.rewards[cut] != 0) and torch.all(st.rewards[~cut] == 0)  # + gamma V(final obs)
    assert st.episode_starts[:, 3].all()


def test_multibinary_actions_on_the_copy_env():
    env = trainer.make_vec_env("heed/Copy-v0", 2, 0, {})
    policy = RecurrentActorCritic(int(env.observation_space.shape[0]), int(env.action_space.shape[0]),
                                  GRUConfig(hidden_size=8), action_kind="multibinary")
    model = RecurrentPPO(policy, env, PPOConfig(n_steps=8))
    model.learn(16)
    assert model.storage.actions.shape == (2, 8, env.action_space.shape[0])
    assert set(model.storage.actions.unique().tolist()) <= {0.0, 1.0}


def test_trainer_main_and_resume(tmp_path):
    cfg = trainer.Config(core=GRUConfig(hidden_size=8), memory_length=2, total_steps=64, n_envs=2, n_steps=16,
                         eval_episodes=4, checkpoint_every=32, run=RunConfig(run_dir=tmp_path / "run", progress=False))
    first = trainer.main(cfg)
    assert first["num_timesteps"] == 64 and "success_rate" in first["eval"]
    run = tmp_path / "run"
    assert (run / "checkpoints" / "latest").exists() and list(run.glob("events.out.tfevents.*"))
    again = trainer.main(trainer.Config(run=RunConfig(resume=run, progress=False), total_steps=128))
    assert again["num_timesteps"] == 128
    saved = json.loads((run / "config.json").read_text())
    assert saved["total_steps"] == 128 and saved["memory_length"] == 2
    assert saved["core"] == {"name": "gru", "hidden_size": 8, "learn_initial_state": False}

    from heed.scripts.policy_memory import Config as MemoryConfig
    from heed.scripts.policy_memory import main as memory_main

    summary = memory_main(MemoryConfig(run=run, episodes=2, out_dir=tmp_path / "fig", prefix="p", video=False))
    assert [e["length"] for e in summary["episodes"]] == [3, 3]
    assert (tmp_path / "fig" / "p_sensitivity.png").stat().st_size > 0


def test_policy_memory_shows_ntm_weightings_and_bench_runs(tmp_path):
    from heed.scripts.bench_ppo_memory import Config as BenchConfig
    from heed.scripts.bench_ppo_memory import main as bench_main
    from heed.scripts.policy_memory import Config as MemoryConfig
    from heed.scripts.policy_memory import main as memory_main

    out = bench_main(BenchConfig(cores=("ntm",), lengths=(1,), total_steps=32, n_envs=2, n_steps=16, hidden_size=8,
                                 eval_episodes=2, sb3_length=-1, runs_root=tmp_path / "runs", out=tmp_path / "b.json"))
    assert [r["L"] for r in out["sweep"]] == [1] and "ntm" in out["largest_solved"]
    summary = memory_main(MemoryConfig(run=tmp_path / "runs" / "ntm_L1_s1", episodes=1, out_dir=tmp_path / "fig"))
    assert (tmp_path / "fig" / "policy_memory_weightings.png").exists() and summary["core"] == "ntm"
    assert (tmp_path / "fig" / "policy_memory_sensitivity.mp4").stat().st_size > 0
    assert summary["episodes"][0]["length"] == 2


@pytest.mark.parametrize(
    "kw, message",
    [({"env": "heed/MemoryLenght-v0"}, "Did you mean: heed/MemoryLength-v0"),
     ({"env": "Pendulum-v1"}, "Discrete"), ({"env_option": ("oops",)}, "KEY=VALUE")],
)
def test_trainer_errors(tmp_path, kw, message):
    with pytest.raises(HeedError, match=message):
        trainer.main(trainer.Config(total_steps=16, run=RunConfig(run_dir=tmp_path, progress=False), **kw))
    assert list(tmp_path.iterdir()) == []  # refused before a run folder was made
    with pytest.raises(HeedError, match="cannot resume .*no such folder"):
        trainer.main(trainer.Config(run=RunConfig(resume=tmp_path / "empty", progress=False)))


def test_map_state_over_policy_state_keeps_structure():
    state = _policy("dnc").initial_state(2)
    doubled = map_state(lambda s: s * 2, state)
    assert type(doubled) is type(state) and doubled.memory.shape == state.memory.shape
