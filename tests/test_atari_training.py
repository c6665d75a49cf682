"""The Atari set-up and heed's DQN trainer end to end: a smoke run, TensorBoard tags, resume, evaluation."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint
from heed.agents.common.session import RunConfig
from heed.agents.common.validate import validate
from heed.agents.trainers import dqn as dqn_trainer
from heed.envs.atari import make_atari_env, make_vector_env

TAGS = {"charts/episodic_return", "charts/sps", "charts/epsilon", "charts/q_values", "losses/td_loss", "eval/return"}


def test_wrapped_atari_observation():  # the env contract: tests/test_envs.py (heed/AtariPong-v0)
    env = make_atari_env("ALE/Pong-v5", training=True)
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
    base = dict(env="ALE/Pong-v5", total_steps=480, num_envs=4, buffer_size=2000, learning_starts=160, batch_size=8,
                train_freq=4, target_update_interval=100, exploration_steps=300, eval_interval=0, eval_episodes=1,
                checkpoint_interval=240, n_steps=3, prioritized=True, max_episode_steps=100, log_interval=100,
                run=RunConfig(seed=3, device="cpu", run_dir=run_dir, threads=1, progress=False))
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
    dqn_trainer.main(dqn_trainer.Config(total_steps=800, run=RunConfig(resume=smoke_run, device="cpu", progress=False)))
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
    from PIL import Image

    with Image.open(tmp_path / "play.gif") as gif:  # every agent step, at game speed: 60 Hz / frame skip 4
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    # identical frames may be merged into one longer frame; the play time is what counts
    assert sum(durations) == pytest.approx(40 * 1000 / 15, abs=10)


def test_validate_rejects_nonsense():
    from heed.agents.common.errors import HeedError

    with pytest.raises(HeedError, match="total-steps"):
        validate(dataclasses.replace(tiny_cfg("x"), total_steps=-5))
    with pytest.raises(HeedError, match="gamma"):
        validate(dataclasses.replace(tiny_cfg("x"), gamma=1.5))
    for field, value in [("learning_rate", float("inf")), ("gamma", float("nan")), ("per_alpha", float("nan")),
                         ("max_grad_norm", float("nan")), ("learning_rate", 0.0)]:
        with pytest.raises(HeedError, match=field.replace("_", "-")):
            validate(dataclasses.replace(tiny_cfg("x"), **{field: value}))


def test_env_ids_any_discrete_gymnasium_env_or_one_line(tmp_path, capsys):
    from heed.agents.common.errors import HeedError
    from heed.agents.dqn import load_q_network

    with pytest.raises(HeedError, match="CartPole-v1"):  # a misspelling gets close matches
        dqn_trainer.main(tiny_cfg(tmp_path / "bad", env="CartPol-v1"))
    with pytest.raises(HeedError, match="Discrete action space"):
        dqn_trainer.main(tiny_cfg(tmp_path / "bad", env="Pendulum-v1"))
    assert not (tmp_path / "bad").exists()
    # CartPole: an MLP on gym.make_vec; a run shorter than --learning-starts says it trains nothing
    run = dqn_trainer.main(tiny_cfg(tmp_path / "cp", env="CartPole-v1", total_steps=100, learning_starts=200,
                                    max_episode_steps=None, eval_episodes=1, checkpoint_interval=0))
    assert "trains nothing" in capsys.readouterr().err
    net, meta = load_q_network(run)
    assert meta["config"]["env_id"] == "CartPole-v1" and meta["config"]["obs_shape"] == [4]
    assert load_checkpoint(latest_checkpoint(run)).counters["n_updates"] == 0
    from heed.scripts.evaluate import Config, main

    out = main(Config(checkpoint=run, episodes=1, epsilon=0.0, seed=0, progress=False))
    assert out["returns"][0] == out["lengths"][0] >= 8  # CartPole: +1 per step until the pole falls


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_package_agent_never_replaces_a_folder_it_did_not_write(smoke_run, tmp_path):
    from heed.agents.common.errors import HeedError
    from heed.agents.dqn import load_q_network
    from heed.scripts.package_agent import Config, main

    before = sorted(p.relative_to(smoke_run) for p in smoke_run.rglob("*"))
    for out in (smoke_run, smoke_run / "checkpoints", smoke_run.parent):
        with pytest.raises(HeedError, match="overlaps"):
            main(Config(run=smoke_run, out=out))
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(HeedError, match="did not write"):
        main(Config(run=smoke_run, out=other))
    assert (other / "todo.txt").read_text() == "keep me"
    assert sorted(p.relative_to(smoke_run) for p in smoke_run.rglob("*")) == before
    shipped = main(Config(run=smoke_run, out=tmp_path / "agent"))
    before = _files(shipped)
    with pytest.raises(HeedError, match="already holds a packaged agent"):
        main(Config(run=smoke_run, out=shipped))  # an agent packaged before is replaced only with --overwrite
    assert _files(shipped) == before
    main(Config(run=smoke_run, out=shipped, overwrite=True))
    assert load_q_network(shipped)[1]["command"].startswith("python scripts/train.py dqn --")


@pytest.mark.parametrize("argv", [
    ["evaluate", "--checkpoint", "x", "--episodes", "0"],
    ["evaluate", "--checkpoint", "x", "--seed", "-1"],
    ["evaluate", "--checkpoint", "x", "--epsilon", "nan"],
    ["evaluate", "--checkpoint", "x", "--video-steps", "0"],
    ["evaluate", "--checkpoint", "x", "--video", "out.avi"],
    ["evaluate", "--episodes", "3"],
    ["package-agent", "--run", "nowhere", "--out", "agent"],
    ["package-agent", "--run", "r", "--out", "a", "--which", "worst"],
])
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy: the module was imported before
def test_evaluate_and_package_bad_flags_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv):
    from heed.scripts.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert list(tmp_path.iterdir()) == []
