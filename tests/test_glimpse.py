"""Glimpse sensors, REINFORCE, the glimpse environments and the trainer (tiny budgets)."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import heed.envs  # noqa: F401  (registers the heed/ ids)
from heed.agents.common.errors import HeedError
from heed.agents.glimpse import RAM, build_model, count_params, hybrid_loss, mc_predict
from heed.agents.glimpse.ram import GlimpseOutput, gaussian_log_prob
from heed.agents.glimpse.sensors import draw_params, draw_read, filterbank, foveal_glimpse
from heed.envs.glimpse import foveal_glimpse_np
from heed.envs.registration import env_table

IMG = torch.arange(1, 65, dtype=torch.float32).view(1, 8, 8)  # pixel (r, c) holds 8 r + c + 1


def _glimpse(x: float, y: float) -> torch.Tensor:
    return foveal_glimpse(IMG, torch.tensor([[x, y]]), patch=2, scales=2)[0]


def test_foveal_centre_by_hand():
    g = _glimpse(0.0, 0.0)  # centre pixel coordinate 4: rows/cols 3..4, then 2..5 pooled 2x2
    assert g.shape == (2, 2, 2)
    assert g[0].tolist() == [[28.0, 29.0], [36.0, 37.0]]
    assert g[1].tolist() == [[23.5, 25.5], [39.5, 41.5]]


def test_foveal_border_by_hand():
    g = _glimpse(-1.0, -1.0)  # top-left corner: rows/cols -1..0, then -2..1 (zero padding)
    assert g[0].tolist() == [[0.0, 0.0], [0.0, 1.0]]
    assert g[1].tolist() == [[0.0, 0.0], [0.0, (1 + 2 + 9 + 10) / 4]]
    g = _glimpse(1.0, -1.0)  # top-right corner: x runs over columns
    assert g[0].tolist() == [[0.0, 0.0], [8.0, 0.0]]


def test_foveal_torch_matches_numpy_reference():
    rng = np.random.default_rng(0)
    images = rng.random((6, 28, 28)).astype(np.float32)
    locs = rng.uniform(-1.2, 1.2, size=(6, 2)).astype(np.float32)
    out = foveal_glimpse(torch.from_numpy(images), torch.from_numpy(locs), patch=6, scales=3).numpy()
    for b in range(6):
        np.testing.assert_allclose(
            out[b], foveal_glimpse_np(images[b], np.clip(locs[b], -1.2, 1.2), 6, 3), atol=1e-6
        )


def test_filterbank_rows_sum_to_one_and_match_a_numpy_loop():
    centre, delta, sigma2 = torch.tensor([3.3, 10.0]), torch.tensor([1.5, 0.7]), torch.tensor([2.0, 0.3])
    f = filterbank(centre, delta, sigma2, n=4, size=12)
    assert f.shape == (2, 4, 12)
    torch.testing.assert_close(f.sum(-1), torch.ones(2, 4))
    for b in range(2):
        for i in range(1, 5):
            mu = centre[b].item() + (i - 4 / 2 - 0.5) * delta[b].item()
            row = np.array([math.exp(-((a - mu) ** 2) / (2 * sigma2[b].item())) for a in range(1, 13)])
            np.testing.assert_allclose(f[b, i - 1].numpy(), row / row.sum(), rtol=1e-5, atol=1e-7)


def test_centred_filter_with_tiny_sigma_returns_the_pixel():
    torch.manual_seed(0)
    height, width, n = 7, 9, 3
    image = torch.rand(1, height, width)
    gx, gy = 4, 3  # 1-indexed pixel (column 4, row 3)
    raw = torch.tensor(
        [
            [
                2 * gx / (width + 1) - 1,
                2 * gy / (height + 1) - 1,
                math.log(1e-4),
                math.log((n - 1) / (max(width, height) - 1)),
                0.0,
            ]
        ]
    )
    params = draw_params(raw, height, width, n)
    torch.testing.assert_close(params.delta, torch.tensor([1.0]))
    read, _, _ = draw_read(image, params, n)
    assert read[0, 1, 1].item() == pytest.approx(image[0, gy - 1, gx - 1].item(), abs=1e-5)
    # with stride 1 the 3x3 read is the 3x3 neighbourhood; gamma scales it
    torch.testing.assert_close(read[0], image[0, gy - 2 : gy + 1, gx - 2 : gx + 1], atol=1e-5, rtol=0)
    raw2 = raw.clone()
    raw2[0, 4] = math.log(2.0)
    torch.testing.assert_close(draw_read(image, draw_params(raw2, height, width, n), n)[0], 2 * read)


@pytest.mark.parametrize("baseline", [0.0, 0.4])
def test_reinforce_gradient_matches_the_analytic_bandit_gradient(baseline):
    """Bandit: l ~ N(mu, sigma^2 I), reward 1[l_x > 0]; E[R] = Phi(mu_x / sigma), d/dmu_x = phi(mu_x/sigma)/sigma."""
    torch.manual_seed(0)
    n, sigma = 100_000, 0.5
    mu = torch.tensor([0.2, -0.3], requires_grad=True)
    mean = mu.expand(n, 2)
    sample = (mean + sigma * torch.randn(n, 2)).detach()
    log_pi = gaussian_log_prob(sample, mean, sigma)[:, None]  # [n, 1]
    correct = sample[:, 0] > 0
    # the "classifier" answers 1 iff l_x > 0
    logits = torch.stack([(~correct).float(), correct.float()], -1) * 10
    out = GlimpseOutput(logits, sample[:, None], log_pi, torch.full((n, 1), baseline), torch.zeros(n, 1))
    loss, stats = hybrid_loss(out, torch.ones(n, dtype=torch.long), learned_policy=True)
    loss.backward()
    z = 0.2 / sigma
    expected = math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / sigma  # d E[R] / d mu_x
    assert stats["reward"] == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), abs=0.005)
    assert -mu.grad[0].item() == pytest.approx(expected, abs=0.02)
    assert mu.grad[1].item() == pytest.approx(0.0, abs=0.02)  # reward does not depend on l_y


def test_location_is_detached_from_the_classifier_and_policy_from_the_core():
    torch.manual_seed(0)
    model = RAM(28, patch=4, scales=2, glimpses=3, hidden=16)
    x, y = torch.rand(5, 28, 28), torch.randint(0, 10, (5,))
    out = model(x)
    torch.nn.functional.cross_entropy(out.logits, y).backward()
    assert model.locator.weight.grad is None and model.baseline.weight.grad is None
    model.zero_grad(set_to_none=True)
    out = model(x)
    reward = (out.logits.argmax(-1) == y).float()
    (-(out.log_pi * (reward[:, None] - 0.5)).sum()).backward()
    assert model.locator.weight.grad is not None
    assert model.core.lstm.weight_ih_l0.grad is None and model.classifier.weight.grad is None


def test_mc_predict_and_model_shapes():
    torch.manual_seed(0)
    x = torch.rand(3, 60, 60)
    for name in ("ram", "random", "soft", "cnn"):
        model = build_model(name, 60, glimpses=4, patch=12, scales=3, hidden=32, read_size=5)
        out = model(x)
        assert out.logits.shape == (3, 10)
        if name != "cnn":
            assert out.locations.shape == (3, 4, 2) and out.locations.abs().max() <= 1.0 + 1e-5
        logp = mc_predict(model, x, samples=4)
        torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3))
    cnn = build_model("cnn", 60, glimpses=8, patch=12, scales=3)
    torch.testing.assert_close(mc_predict(cnn, x, samples=3), torch.log_softmax(cnn(x).logits, -1))
    ram = count_params(build_model("ram", 100, 8, 12, 4, hidden=64))
    assert abs(count_params(build_model("cnn", 100, 8, 12, 4, hidden=64)) - ram) / ram < 0.02


GLIMPSE_IDS = [i for i in sorted(env_table()) if i.startswith("heed/Glimpse")]


@pytest.mark.parametrize("env_id", GLIMPSE_IDS)
def test_glimpse_episode_length(env_id):  # the env contract for every id: tests/test_envs.py
    env = gym.make(env_id)
    env.reset(seed=3)
    steps, terminated = 0, False
    while not terminated:
        *_, terminated, _, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == env_table()[env_id].kwargs["glimpses"]


@pytest.mark.parametrize("env_id", ["heed/GlimpseMNIST-v0", "heed/GlimpseGrid-v0"])
def test_flat_actions_act_like_dict_actions(env_id):
    """``flat_actions=True`` (the SB3 form) looks where, and answers what, the Dict action would."""
    grid = "Grid" in env_id
    dict_env, flat_env = gym.make(env_id), gym.make(env_id, flat_actions=True)
    label = int(dict_env.unwrapped.digits.labels[5])
    a, _ = dict_env.reset(seed=0, options={"index": 5})
    b, _ = flat_env.reset(seed=0, options={"index": 5})
    for step in range(dict_env.unwrapped.glimpses):
        where = step % 9 if grid else np.array([0.5, -0.25], np.float32) * step / 3
        scores = np.full(10, -1.0, np.float32)
        scores[label] = 1.0
        flat = np.array([where, label]) if grid else np.concatenate([where, scores]).astype(np.float32)
        a, ra, *_ = dict_env.step({"location": where, "label": label})
        b, rb, *_ = flat_env.step(flat)
        assert all(np.array_equal(a[k], b[k]) for k in a) and ra == rb
    assert ra == 1.0


def test_env_rewards_the_right_answer_and_shows_the_right_tile():
    env = gym.make("heed/GlimpseGrid-v0", split="test")
    obs, info = env.reset(seed=0, options={"index": 11})
    canvas = np.pad(env.unwrapped._canvas, 1)
    np.testing.assert_array_equal(obs["glimpse"][0], canvas[10:20, 10:20])  # reset looks at the centre tile
    obs, *_ = env.step({"location": 2, "label": 0})  # top-right tile
    np.testing.assert_array_equal(obs["glimpse"][0], canvas[0:10, 20:30])
    assert obs["location"][0] > 0 > obs["location"][1]
    env.step({"location": 0, "label": 0})
    env.step({"location": 8, "label": 0})  # the 4th and last glimpse
    label = int(env.unwrapped.digits.labels[11])
    _, reward, terminated, _, info = env.step({"location": 0, "label": label})
    assert terminated and reward == 1.0 and info["correct"]
    env.reset(seed=0, options={"index": 11})
    for _ in range(3):
        env.step({"location": 4, "label": 0})
    assert env.step({"location": 4, "label": (label + 1) % 10})[1] == 0.0
    with pytest.raises(HeedError, match="grid variant"):
        gym.make("heed/GlimpseGrid-v0", dataset="cluttered60")


def _tiny(tmp_path, **kw):
    from heed.agents.common.session import RunConfig
    from heed.agents.cores.lstm import LSTMConfig
    from heed.agents.trainers.glimpse import BUDGET, Config

    budget = {"steps": kw.pop("steps", 4), "eval_every": 2, "checkpoint_every": 2, "log_every": 1}
    base = {"dataset": "mnist", "model": "ram", "glimpses": 2, "batch_size": 8, "hidden": 16,
            "core": LSTMConfig(hidden_size=16), "budget": dataclasses.replace(BUDGET, **budget)}
    base.update(eval_size=20, mc_samples=2)
    base.update(run=RunConfig(run_dir=tmp_path / "run", device="cpu", progress=False), **kw)
    return Config(**base)


def _weights(run_dir):
    from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint

    return load_checkpoint(latest_checkpoint(run_dir)).tensors


def test_trainer_runs_and_resumes_exactly(tmp_path):
    from heed.agents.trainers.glimpse import main

    cfg = _tiny(tmp_path)
    res = main(cfg)
    assert res["step"] == 4 and 0 <= res["test_error"] <= 100 and (tmp_path / "run" / "results.json").exists()
    assert any(p.name.startswith("events") for p in (tmp_path / "run").iterdir())
    full = _weights(tmp_path / "run")
    # simulate an interruption after step 2, then resume: the same weights as the uninterrupted run
    ckpts = tmp_path / "run" / "checkpoints"
    shutil.rmtree(ckpts / "step_0000000004")
    (ckpts / "latest").write_text("step_0000000002")
    from heed.agents.common.session import RunConfig
    from heed.agents.trainers.glimpse import BUDGET, Config

    res2 = main(Config(run=RunConfig(resume=tmp_path / "run", progress=False), budget=dataclasses.replace(BUDGET, steps=4)))
    assert res2["step"] == 4
    resumed = _weights(tmp_path / "run")
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], msg=k)
    with pytest.raises(HeedError, match="already holds a heed run"):
        main(cfg)


@pytest.mark.parametrize("model", ["soft", "cnn", "random"])
def test_trainer_other_models(tmp_path, model):
    from heed.agents.trainers.glimpse import main

    res = main(_tiny(tmp_path, model=model, dataset="translated60", read_size=4, steps=2))
    assert res["model"] == model and res["step"] == 2


def test_trainer_bad_input(tmp_path):
    from heed.agents.common.session import RunConfig
    from heed.agents.trainers.glimpse import Config, main

    with pytest.raises(HeedError, match="Did you mean"):
        main(_tiny(tmp_path, dataset="cluttered6"))
    with pytest.raises(HeedError, match="model"):
        main(_tiny(tmp_path, model="rma"))
    with pytest.raises(HeedError, match="cannot resume .*no such folder"):
        main(Config(run=RunConfig(resume=tmp_path / "nowhere")))
    with pytest.raises(HeedError, match="--patch must be in"):
        main(_tiny(tmp_path, patch=0))
    assert not (tmp_path / "run").exists()  # every refusal came before a run folder was made


def _load_script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_draw_frame_puts_the_current_box_where_the_glimpse_was():
    from heed.analysis.glimpse_figures import CURRENT_COLOUR, draw_frame

    frame = draw_frame(np.zeros((10, 10)), np.array([[0.0, 0.0]]), np.array([[4.0]]), upto=0, scale=1)
    assert frame.shape == (10, 10, 3) and frame.dtype == np.uint8
    # the box spans 5 +- 2 pixels around the centre pixel coordinate 5
    assert tuple(frame[3, 3]) == CURRENT_COLOUR and tuple(frame[7, 5]) == CURRENT_COLOUR
    assert tuple(frame[0, 0]) == (0, 0, 0)


@pytest.mark.parametrize("model,video", [("soft", "gif"), ("ram", "mp4")])
def test_record_glimpses_writes_still_and_video(tmp_path, model, video):
    from heed.agents.trainers.glimpse import main as train

    train(_tiny(tmp_path, model=model, steps=2, read_size=4))
    record = _load_script("record_glimpses")
    paths = record.main(
        record.Config(run_dir=str(tmp_path / "run"), count=2, video=video, out=str(tmp_path / "rec"))
    )
    assert paths["still"].stat().st_size > 1000 and paths["video"].suffix == f".{video}"
    assert paths["video"].stat().st_size > 500


def test_record_glimpses_refuses_a_cnn(tmp_path):
    from heed.agents.trainers.glimpse import main as train

    train(_tiny(tmp_path, model="cnn", steps=1))
    record = _load_script("record_glimpses")
    with pytest.raises(HeedError, match="no glimpses"):
        record.main(record.Config(run_dir=str(tmp_path / "run")))
