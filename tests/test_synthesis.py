"""Handwriting synthesis: the window, the mixture density, biased sampling, the stop rule, the trainer (tiny)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.handwriting_mdn import MixtureParams, log_likelihood, sample_point, split_params
from heed.agents.handwriting_synthesis import (
    HandwritingSynthesis,
    SynthesisConfig,
    encode_text,
    stop_reached,
    window_weights,
    write_text,
)
from heed.agents.trainers.synthesis import BUDGET, Config, main
from heed.analysis.handwriting_figures import alignment_figure, uniform_pace, window_alignment, writing_frames
from heed.envs.handwriting import ALPHABET

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = SynthesisConfig(hidden_size=16, layers=2, mixtures=3, window_mixtures=2)


def test_window_peaks_on_the_letter_kappa_points_at():
    """phi(u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2): one Gaussian at kappa = 3 peaks on letter 3."""
    ones = torch.ones(1, 1)
    for kappa in (0, 3, 5):
        phi = window_weights(ones, 2 * ones, torch.full((1, 1), float(kappa)), 7)[0]
        assert int(phi.argmax()) == kappa
        assert phi[kappa] == pytest.approx(1.0)
        assert phi[kappa + 1] == pytest.approx(math.exp(-2.0))


def test_the_model_window_reads_the_letter_under_kappa():
    """Window weights zeroed, biases hand-set so kappa moves one letter a step: phi peaks on letter t + 1
    and w_t is (nearly) that letter's one-hot."""
    torch.manual_seed(0)
    model = HandwritingSynthesis(SMALL)
    k = SMALL.window_mixtures
    with torch.no_grad():
        model.window_params.weight.zero_()
        model.window_params.bias.copy_(torch.tensor([0.0] * k + [math.log(8.0)] * k + [0.0] * k))
    text = "heed the"
    onehot, lengths = model.encode([text])
    with torch.no_grad():
        out = model(torch.zeros(1, 6, 3), onehot, lengths)
    for t in range(6):
        assert out.kappa[0, t].tolist() == pytest.approx([t + 1.0] * k)
        assert int(out.phi[0, t].argmax()) == t + 1
        letter = ALPHABET.index(text[t + 1])
        assert int(out.w[0, t].argmax()) == letter
        assert out.w[0, t, letter] == pytest.approx(float(k), rel=1e-3)  # K Gaussians, alpha = 1 each


def test_kappa_is_monotone():
    """kappa_t = kappa_{t-1} + exp(k^): it never moves back, whatever the weights and inputs."""
    torch.manual_seed(1)
    model = HandwritingSynthesis(SMALL)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0)
    onehot, lengths = model.encode(["abc", "a longer line"])
    with torch.no_grad():
        out = model(torch.randn(2, 40, 3), onehot, lengths)
    steps = torch.diff(out.kappa, dim=1, prepend=torch.zeros_like(out.kappa[:, :1]))
    assert bool((steps > 0).all())


def test_forward_matches_stepping():
    """The fused forward (upper layers run as one nn.LSTM) equals stepping every layer, with and without a window."""
    torch.manual_seed(2)
    for window in (True, False):
        model = HandwritingSynthesis(SynthesisConfig(hidden_size=8, layers=3, mixtures=2, window_mixtures=2,
                                                     window=window))
        onehot, lengths = model.encode(["hi there", "ab"])
        x = torch.randn(2, 7, 3)
        out = model(x, onehot, lengths)
        state = model.start_state(onehot, lengths)
        for t in range(7):
            params, state, phi = model.step(x[:, t], state, onehot, lengths)
            torch.testing.assert_close(params.mu, out.params.mu[:, t])
            torch.testing.assert_close(params.eos_logit, out.params.eos_logit[:, t])
            torch.testing.assert_close(phi, out.phi[:, t])


def test_no_window_model_reads_the_text():
    """The ablation gets the text whole (a GRU summary): another text changes its prediction; phi stays 0."""
    torch.manual_seed(3)
    model = HandwritingSynthesis(SynthesisConfig(hidden_size=8, mixtures=2, window=False))
    x = torch.randn(1, 5, 3)
    a = model(x, *model.encode(["hello"]))
    b = model(x, *model.encode(["world"]))
    assert not torch.allclose(a.params.mu, b.params.mu)
    assert float(a.phi.abs().sum()) == 0.0


def _direct_log_likelihood(y: np.ndarray, target: np.ndarray, m: int) -> float:
    """log p by the textbook formulas: softmax weights, 2x2 covariance inverse and determinant, Bernoulli."""
    e_hat, pi_hat = y[0], y[1 : 1 + m]
    mu = y[1 + m : 1 + 3 * m].reshape(m, 2)
    sigma = np.exp(y[1 + 3 * m : 1 + 5 * m].reshape(m, 2))
    rho = np.tanh(y[1 + 5 * m :])
    pi = np.exp(pi_hat - pi_hat.max())
    pi /= pi.sum()
    density = 0.0
    for j in range(m):
        cov = np.array([[sigma[j, 0] ** 2, rho[j] * sigma[j, 0] * sigma[j, 1]],
                        [rho[j] * sigma[j, 0] * sigma[j, 1], sigma[j, 1] ** 2]])
        d = target[:2] - mu[j]
        density += pi[j] * np.exp(-0.5 * d @ np.linalg.inv(cov) @ d) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
    e = 1.0 / (1.0 + np.exp(-e_hat))
    return float(np.log(density) + np.log(e if target[2] > 0.5 else 1.0 - e))


def test_mixture_log_likelihood_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    m = 3
    y = rng.normal(0, 0.8, (4, 1 + 6 * m))
    targets = np.concatenate([rng.normal(0, 1, (4, 2)), np.array([[1.0], [0.0], [0.0], [1.0]])], 1)
    got = log_likelihood(split_params(torch.tensor(y), m), torch.tensor(targets))
    want = [_direct_log_likelihood(y[i], targets[i], m) for i in range(4)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9)


def test_large_bias_samples_the_likeliest_mean():
    """b -> large: sigma = exp(sigma^ - b) -> 0 and pi -> one-hot, so samples collapse on that component's mean."""
    m = 3
    params = MixtureParams(
        pi_logits=torch.tensor([[0.2, 1.0, 0.5]]).expand(4000, m),
        mu=torch.tensor([[[0.0, 0.0], [1.0, -2.0], [3.0, 3.0]]]).expand(4000, m, 2),
        log_sigma=torch.zeros(4000, m, 2),
        rho_logits=torch.full((4000, m), 0.5),
        eos_logit=torch.zeros(4000),
    )
    gen = torch.Generator().manual_seed(0)
    loose = sample_point(params, 0.0, gen)
    sharp = sample_point(params, 20.0, gen)
    assert float(loose[:, :2].std(0).min()) > 0.5
    assert float((sharp[:, :2] - torch.tensor([1.0, -2.0])).abs().max()) < 1e-6
    corr = np.corrcoef(sample_point(params._replace(pi_logits=torch.tensor([[0.0, 50.0, 0.0]]).expand(4000, m)),
                                    0.0, gen)[:, :2].T.numpy())[0, 1]
    assert corr == pytest.approx(math.tanh(0.5), abs=0.05)  # the sampled offsets carry rho


def test_stop_rule_on_a_hand_built_window():
    """Stop when phi(t, U) passes every phi(t, u < U); padding past U is ignored."""
    phi = torch.tensor([
        [0.1, 0.9, 0.2, 0.0, 5.0],  # U = 3: end 0.0 < 0.9 -> go on (the padding's 5.0 does not count)
        [0.0, 0.1, 0.3, 0.4, 0.0],  # U = 3: end 0.4 > 0.3 -> stop
        [0.0, 0.5, 0.5, 0.0, 0.0],  # U = 2: end 0.5 = 0.5, not past it -> go on
    ])
    assert stop_reached(phi, torch.tensor([3, 3, 2])).tolist() == [False, True, False]


def test_bad_text_is_one_clear_error():
    with pytest.raises(HeedError, match=r"'!'.*'É'|'É'.*'!'") as info:
        encode_text(["hello", "Écrit!"], ALPHABET)
    assert "\n" not in str(info.value)
    with pytest.raises(HeedError, match="at least one"):
        encode_text([""], ALPHABET)


def test_writing_stops_by_the_rule_and_primes():
    """A window that jumps to just past the text stops at the first step; priming reads the prime's points first."""
    torch.manual_seed(4)
    model = HandwritingSynthesis(SMALL)
    with torch.no_grad():
        model.window_params.weight.zero_()
        model.window_params.bias[2 * SMALL.window_mixtures :].fill_(math.log(2.0))  # kappa_1 = 2 = U
    sample = write_text(model, "hi", bias=1.0, max_steps=50)
    assert sample.stopped and sample.points.shape == (0, 3)
    with torch.no_grad():
        model.window_params.bias[2 * SMALL.window_mixtures :].fill_(-8.0)  # kappa barely moves
    prime = torch.tensor([[0.1, 0.0, 0.0], [0.1, 0.1, 1.0]])
    sample = write_text(model, "ab", bias=1.0, max_steps=5, prime=(prime, "x"),
                        generator=torch.Generator().manual_seed(0))
    assert not sample.stopped and sample.points.shape == (5, 3) and sample.phi.shape == (5, 5)
    assert sample.text_offset == 2  # "x ab": the new text starts at letter 2


def test_window_alignment_and_pace_baseline():
    phi = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.0, 0.1, 0.9], [0.9, 0.0, 0.1]])
    char_index = np.array([0, 1, 1, 2])
    assert window_alignment(phi, char_index, tolerance=0) == pytest.approx(2 / 4)
    assert window_alignment(phi, char_index, tolerance=1) == pytest.approx(3 / 4)
    assert window_alignment(phi, char_index, np.array([True, True, False, False]), tolerance=0) == 1.0
    assert uniform_pace(6, 3).argmax(-1).tolist() == [0, 0, 1, 1, 2, 2]


def test_figures_render():
    torch.manual_seed(5)
    model = HandwritingSynthesis(SMALL)
    sample = write_text(model, "ab", bias=0.5, max_steps=6, generator=torch.Generator().manual_seed(0))
    points, phi = sample.points.numpy(), sample.phi.numpy()
    fig = alignment_figure(points, phi, "ab")
    assert len(fig.axes) == 2
    frames = writing_frames(points, phi, "ab", every=3)
    assert len(frames) >= 2 and frames[0].shape == frames[-1].shape and frames[0].dtype == np.uint8


def test_trainer_smoke_and_resume(tmp_path):
    run_dir = tmp_path / "syn"
    budget = replace(BUDGET, steps=2, eval_every=1, checkpoint_every=1, log_every=1)
    cfg = Config(model=SMALL, budget=budget, batch_size=4, pool_size=8, refresh=1, eval_size=4,
                 run=RunConfig(run_dir=run_dir, progress=False))
    results = main(cfg)
    assert results["step"] == 2 and math.isfinite(results["nll"])
    assert 0.0 <= results["window_on_letter"] <= 1.0
    assert json.loads((run_dir / "results.json").read_text())["step"] == 2
    again = main(Config(budget=replace(BUDGET, steps=3), run=RunConfig(resume=run_dir, progress=False)))
    assert again["step"] == 3


@pytest.mark.filterwarnings("ignore:'heed.scripts.*found in sys.modules:RuntimeWarning")
def test_synthesize_command_writes_its_figures_and_refuses_bad_text(tmp_path, capsys):
    """``heed synthesize`` on a tiny shipped model: --export round trip, the figures, and one line for bad text."""
    from heed.agents.handwriting_synthesis import export_synthesis, load_synthesis
    from heed.scripts.cli import main as cli
    from heed.scripts.synthesize import Config as SynthConfig
    from heed.scripts.synthesize import main as synthesize

    torch.manual_seed(6)
    model = HandwritingSynthesis(SMALL)
    export_synthesis(model, tmp_path / "tiny")
    again = load_synthesis(tmp_path / "tiny")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value.half().float())
    summary = synthesize(SynthConfig(checkpoint=tmp_path / "tiny", text="ab", styles=1, steps_per_letter=3,
                                     out_dir=tmp_path / "figs"))
    names = {p.name for p in (tmp_path / "figs").iterdir()}
    assert {"synthesis_alignment.png", "synthesis_styles.png", "synthesis_writing.gif", "synthesis.json"} <= names
    assert summary["unprimed"]["points"] <= 6 and len(summary["styles"]) == 1
    with pytest.raises(SystemExit) as exc:
        cli(["synthesize", "--checkpoint", str(tmp_path / "tiny"), "--text", "Hi!", "--out-dir", str(tmp_path / "x")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'!'" in err and "'H'" in err
    assert not (tmp_path / "x").exists()


def test_the_shipped_model_writes_a_word_and_stops():
    """agents/pretrained/synthesis: fp16 safetensors + JSON, small; it writes "heed" and the stop rule ends it."""
    from pathlib import Path

    from safetensors import safe_open

    from heed.agents.handwriting_synthesis import load_synthesis

    shipped = Path(__file__).resolve().parents[1] / "agents" / "pretrained" / "synthesis"
    with safe_open(str(shipped / "weights.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert (shipped / "weights.safetensors").stat().st_size < 4 * 2**20
    model = load_synthesis(shipped)
    assert model.cfg.window
    sample = write_text(model, "heed", bias=2.0, max_steps=25 * 4, generator=torch.Generator().manual_seed(0))
    assert sample.stopped and 10 < len(sample.points) < 100
    peaks = sample.phi[:, :4].argmax(-1)
    assert bool((torch.diff(peaks) >= -1).all()) and int(peaks[0]) == 0 and int(peaks[-1]) == 3  # h ... d, in order
