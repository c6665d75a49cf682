"""render_saliency on the folders a DQN training run leaves (run dir, checkpoint dir) with every method, on Enduro."""

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from heed.agents.common.errors import HeedError
from heed.analysis.saliency_methods import SALIENCY_METHODS
from heed.scripts import render_saliency

pytestmark = pytest.mark.usefixtures("one_thread")

LIBRARY_METHODS = [m for m in SALIENCY_METHODS if not m.startswith("captum-")]


@pytest.fixture(scope="module")
def enduro_run(tmp_path_factory) -> Path:
    """A 12-step Dueling Double DQN training run on Enduro (checkpoint at the end, online + target nets and Adam)."""
    from heed.agents.common.session import RunConfig
    from heed.agents.trainers import dqn

    run_dir = tmp_path_factory.mktemp("runs") / "enduro"
    dqn.main(dqn.Config(
        env="ALE/Enduro-v5", total_steps=12, num_envs=1, buffer_size=64, learning_starts=8, batch_size=4,
        train_freq=4, exploration_steps=8, eval_interval=0, checkpoint_interval=12, log_interval=4,
        eval_episodes=1, max_episode_steps=40,  # the end-of-run evaluation: one short game, not a full Enduro day
        run=RunConfig(run_dir=run_dir, device="cpu", seed=0, progress=False),
    ))
    return run_dir


def test_a_run_dir_gives_the_enduro_video_and_the_lecture_split(tmp_path, enduro_run):
    out = tmp_path / "enduro.mp4"
    summary = render_saliency.main(render_saliency.Config(
        checkpoint=enduro_run, steps=4, out=out, device="cpu", method="gradient", progress=False))
    assert np.stack(list(iio.imiter(out))).shape[0] == 4
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["env_id"] == "ALE/Enduro-v5" and saved["steps"] == 4
    split = saved["focus"]["split"]
    assert split["by"] == "car_near" and split["parts"]["yes"]["frames"] + split["parts"]["no"]["frames"] == 4
    horizon = [split["parts"][p]["value"]["horizon_band"] for p in ("yes", "no") if split["parts"][p]["frames"]]
    assert all(0 <= h["mass"] <= 1 and h["frames"] > 0 for h in horizon)
    assert summary["focus"]["split"] == split


@pytest.mark.parametrize("method", LIBRARY_METHODS + ["captum-gradient"])
def test_every_method_on_a_training_checkpoint_dir(tmp_path, enduro_run, method):
    ckpt = next((enduro_run / "checkpoints").glob("step_*"))
    out = tmp_path / f"{method}.gif"
    render_saliency.main(render_saliency.Config(
        checkpoint=ckpt, steps=2, out=out, mode="overlay" if method == "occlusion" else "panels", device="cpu",
        method=method, progress=False))
    assert np.stack(list(iio.imiter(out))).shape[0] == 2
    focus = json.loads(out.with_suffix(".json").read_text())["focus"]
    assert set(focus["value"]["objects"]) == {"player_car", "other_cars", "car_ahead", "horizon_band"}


def test_a_wrong_folder_is_one_line(tmp_path, enduro_run):
    cfg = dict(steps=2, out=tmp_path / "a.mp4", device="cpu", progress=False)
    with pytest.raises(HeedError, match="holds no weights.safetensors and no checkpoints/latest"):
        render_saliency.main(render_saliency.Config(checkpoint=tmp_path, **cfg))
    with pytest.raises(HeedError, match="holds no weights.safetensors"):
        render_saliency.main(render_saliency.Config(checkpoint=enduro_run / "checkpoints", **cfg))


class _LongEpisode:
    """A stand-in env whose one episode lasts 700 steps, longer than the default 600-step recording."""

    def __init__(self, length: int = 700):
        self.length, self.t = length, 0

    def reset(self, seed=None):
        self.t = 0
        return np.zeros((4, 8, 8), np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.zeros((4, 8, 8), np.uint8), 1.0, self.t >= self.length, False, {}

    def render(self):
        return np.zeros((6, 5, 3), np.uint8)


def test_episodes_without_steps_plays_whole_episodes():
    """`--episodes 1` alone records one whole episode (it stopped at the 600-step default before);
    `--steps` still wins when given, and the cap keeps a recording bounded."""
    from heed.analysis.agent_video import play

    cfg = lambda **kw: render_saliency.Config(checkpoint=Path("x"), **kw)  # noqa: E731
    assert render_saliency.play_steps(cfg()) == render_saliency.DEFAULT_STEPS == 600
    assert render_saliency.play_steps(cfg(episodes=1)) == render_saliency.MAX_STEPS == 30_000
    assert render_saliency.play_steps(cfg(episodes=2, steps=50)) == 50
    assert render_saliency.play_steps(cfg(episodes=1, steps=0)) == render_saliency.MAX_STEPS  # 0: until the episodes end
    with pytest.raises(HeedError, match="at least one positive"):
        render_saliency.main(cfg(steps=0, out=Path("x.mp4")))
    rec = play(_LongEpisode(), lambda obs: (0, 0.0), render_saliency.play_steps(cfg(episodes=1)), 1, progress=False)
    assert len(rec) == 700 and rec.episode_lengths == [700] and rec.episode_returns == [700.0]
    rec = play(_LongEpisode(), lambda obs: (0, 0.0), render_saliency.play_steps(cfg()), 0, progress=False)
    assert len(rec) == 600 and rec.episode_lengths == []
