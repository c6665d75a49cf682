"""The Atari set-up and heed's DQN trainer end to end: a smoke run, TensorBoard tags, resume, evaluation."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint
from heed.agents.trainers import dqn as dqn_trainer
from heed.envs.atari import make_atari_env, make_vector_env

TAGS = {"charts/episodic_return", "charts/sps", "charts/epsilon", "charts/q_values", "losses/td_loss", "eval/return"}


def test_check_env_on_wrapped_atari():
    env = make_atari_env("ALE/Pong-v5", training=True)
    check_env(env.unwrapped, skip_render_check=True)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8


def test_vector_and_single_env_agree_on_preprocessing():
    vec = make_vector_env("ALE/Pong-v5", 2)
    obs, info = vec.reset(seed=0)
    single, _ = make_atari_env("ALE/Pong-v5").reset(seed=0)
    assert obs.shape == (2, *single.shape) and obs.dtype == single.dtype
    # a fresh stack is zero-padded in both
    assert (obs[:, :3] == 0).all() and (single[:3] == 0).all()
    assert "lives" in info
    vec.close()


def tiny_cfg(run_dir, **kw):
    base = dict(env="ALE/Pong-v5", total_steps=480, seed=3, device="cpu", run_dir=run_dir, num_envs=4,
                buffer_size=2000, learning_starts=160, batch_size=8, train_freq=4, target_update_interval=100,
                exploration_steps=300, eval_interval=0, eval_episodes=1, checkpoint_interval=240,
                torch_threads=1, progress=False, n_steps=3, prioritized=True, max_episode_steps=100,
                log_interval=100)
    base.update(kw)
    return dqn_trainer.Config(**base)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "pong"
    torch.manual_seed(0)
    dqn_trainer.main(tiny_cfg(run_dir))
    return run_dir


def scalars(run_dir):
    ea = EventAccumulator(str(run_dir))
    ea.Reload()
    return ea, {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_smoke_run_writes_tensorboard_config_and_checkpoints(smoke_run):
    ea, data = scalars(smoke_run)
    missing = TAGS - set(data)
    assert not missing, f"missing TensorBoard tags: {missing}"
    assert "hyperparameters" in " ".join(ea.Tags()["tensors"]) or ea.Tags()["tensors"]
    cfg = json.loads((smoke_run / "config.json").read_text())
    assert cfg["env"] == "ALE/Pong-v5" and cfg["total_steps"] == 480
    ckpt = load_checkpoint(latest_checkpoint(smoke_run))
    assert ckpt.counters["global_step"] >= 480
    assert ckpt.optimizer_tensors is not None
    assert (smoke_run / "best" / "weights.safetensors").exists()


def test_resume_continues_counters_and_curves(smoke_run):
    before = load_checkpoint(latest_checkpoint(smoke_run)).counters
    dqn_trainer.main(dqn_trainer.Config(resume=smoke_run, total_steps=800, device="cpu", progress=False))
    after = load_checkpoint(latest_checkpoint(smoke_run)).counters
    assert after["global_step"] >= 800
    assert after["n_updates"] > before["n_updates"]
    assert after["episodes"] >= before["episodes"]
    _, data = scalars(smoke_run)
    steps = [s for s, _ in data["charts/epsilon"]]
    assert steps == sorted(steps) and steps[-1] >= 800  # one curve, continued, no restart at 0
    eps = dict(data["charts/epsilon"])
    # the schedule continued from the step counter (exploration_steps=300 -> final epsilon)
    assert eps[steps[-1]] == pytest.approx(0.01)
    assert json.loads((smoke_run / "config.json").read_text())["total_steps"] == 800


def test_same_seed_same_weights(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = tiny_cfg(tmp_path / name, total_steps=240, checkpoint_interval=0, prioritized=False)
        dqn_trainer.main(cfg)
        runs.append(load_checkpoint(latest_checkpoint(tmp_path / name)).tensors)
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=0, atol=0)


def test_evaluate_script_plays_full_games(smoke_run, tmp_path):
    from heed.scripts.evaluate import Config, main

    out = main(Config(checkpoint=smoke_run, episodes=1, epsilon=1.0, seed=0, progress=False,
                      video=tmp_path / "play.gif", video_steps=40))
    assert len(out["returns"]) == 1
    # a full game of Pong ends when one side reaches 21 points
    assert out["returns"][0] <= -1 or out["returns"][0] >= 1
    assert (tmp_path / "play.gif").stat().st_size > 0


def test_validate_rejects_nonsense():
    from heed.agents.common.errors import HeedError

    with pytest.raises(HeedError, match="total-steps"):
        dqn_trainer.validate(dataclasses.replace(tiny_cfg("x"), total_steps=-5))
    with pytest.raises(HeedError, match="gamma"):
        dqn_trainer.validate(dataclasses.replace(tiny_cfg("x"), gamma=1.5))
