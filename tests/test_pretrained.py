"""The shipped Pong agent: safe loading, its recorded provenance, and a short evaluation."""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from heed.agents.dqn import load_q_network

PONG = Path(__file__).resolve().parents[1] / "agents" / "pretrained" / "pong"


def test_shipped_files_and_fp16_weights():
    for name in ("weights.safetensors", "meta.json", "config.json", "learning_curve.csv", "learning_curve.png"):
        assert (PONG / name).exists(), name
    with safe_open(str(PONG / "weights.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float16}
    meta = json.loads((PONG / "meta.json").read_text())
    assert meta["command"].startswith("python scripts/train.py dqn --")
    assert meta["config"]["env_id"] == "ALE/Pong-v5"
    assert (PONG / "weights.safetensors").stat().st_size < 8 * 2**20


def test_load_and_play_one_game_better_than_random():
    from heed.scripts.evaluate import Config, main

    net, meta = load_q_network(PONG)
    x = torch.zeros(2, 4, 84, 84, dtype=torch.uint8)
    assert torch.isfinite(net(x)).all() and net(x).shape == (2, 6)
    out = main(Config(checkpoint=PONG, episodes=1, seed=0, progress=False, device="cpu"))
    # a random or untrained Pong agent loses 21-0 or 21-1; the shipped agent wins (it scored 17-21 in
    # each of 10 evaluation games, RESULTS.md)
    assert out["returns"][0] > 10
    assert out["lengths"][0] > 1000


def test_sb3_evaluate_policy_on_the_shipped_agent():
    """SB3's own tool scores heed's agent: from_checkpoint builds a DuelingDQN with the same network."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from heed.agents.dqn import DuelingDQN
    from heed.envs.atari import make_atari_env

    net, _ = load_q_network(PONG)
    model = DuelingDQN.from_checkpoint(PONG, device="cpu")
    env = make_atari_env("ALE/Pong-v5", training=False, max_episode_steps=400)
    obs = np.stack([env.reset(seed=s)[0] for s in range(4)] + [env.step(2)[0] for _ in range(28)])
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, net(torch.as_tensor(obs)).argmax(dim=1).numpy())
    vec = DummyVecEnv([lambda: make_atari_env("ALE/Pong-v5", training=False, max_episode_steps=800)])
    vec.seed(1)
    mean, _ = evaluate_policy(model, vec, n_eval_episodes=1, deterministic=True, warn=False)
    # 800 agent steps of Pong: the shipped agent is ahead (+2 to +9 over seeds 0-2, measured); a random
    # agent is about 15 points behind
    assert mean >= 1


ENDURO = PONG.parent / "enduro"


def test_shipped_enduro_agent_drives_where_a_random_agent_does_not():
    """The lecture's agent: fp16 safetensors with its provenance, and 600 greedy agent steps of Enduro
    pass cars (51 and 56 at seeds 0 and 1, measured) where uniformly random actions pass none."""
    from heed.envs.atari import make_atari_env

    with safe_open(str(ENDURO / "weights.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    meta = json.loads((ENDURO / "meta.json").read_text())
    assert meta["command"].startswith("python scripts/train.py dqn --") and "ALE/Enduro-v5" in meta["command"]
    net, _ = load_q_network(ENDURO)
    scores = {}
    for agent in ("greedy", "random"):
        env = make_atari_env("ALE/Enduro-v5", training=False, max_episode_steps=600)
        obs, _ = env.reset(seed=0)
        rng, total, done = np.random.default_rng(0), 0.0, False
        while not done:
            with torch.no_grad():
                action = int(net(torch.as_tensor(obs[None])).argmax()) if agent == "greedy" else int(rng.integers(9))
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        scores[agent] = total
    assert scores["random"] == 0 and scores["greedy"] >= 25, scores
