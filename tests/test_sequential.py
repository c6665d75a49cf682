"""Sequential Jacobians against torch.autograd.functional.jacobian and an analytic model."""

import numpy as np
import pytest
import torch
from torch import nn

from heed.analysis import AnalysisError, sensitivity_matrix, sequential_jacobian

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(fn, x):
    """Full Jacobian per row: ``[B, T, K, T, D]`` from torch.autograd.functional.jacobian."""
    full = torch.autograd.functional.jacobian(fn, x)  # [B, T, K, B, T, D]
    return torch.stack([full[b, :, :, b] for b in range(x.shape[0])])


@pytest.fixture(params=["lstm", "gru"])
def rnn(request):
    torch.manual_seed(0)
    cls = nn.LSTM if request.param == "lstm" else nn.GRU
    return cls(3, 5, batch_first=True).eval()


def test_sequential_jacobian_matches_autograd(rnn):
    x = torch.randn(2, 6, 3)
    ref = _reference(lambda z: rnn(z)[0], x)
    for t in (0, 3, -1):
        jac = sequential_jacobian(rnn, x, t)  # nn.RNN's (output, state) tuple is handled
        assert jac.shape == (2, 5, 6, 3)
        torch.testing.assert_close(jac, ref[:, t])
        future = jac[:, :, (t % 6) + 1 :]
        assert torch.equal(future, torch.zeros_like(future))  # exactly zero, not just small


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_sensitivity_matrix_matches_autograd(rnn, mode):
    x = torch.randn(2, 7, 3)
    ref = _reference(lambda z: rnn(z)[0], x).pow(2).sum((2, 4)).sqrt()  # [B, T, T]
    sens = sensitivity_matrix(rnn, x, mode=mode, chunk_size=4)
    assert sens.shape == (2, 7, 7)
    torch.testing.assert_close(sens, ref)
    upper = torch.triu(sens, diagonal=1)
    assert torch.equal(upper, torch.zeros_like(upper))


def test_analytic_cumulative_model():
    """y_t = sum_{s<=t} W x_s: dy_t/dx_s = W for s <= t, so S[t, s] = ||W||_F (a plain numpy check)."""
    torch.manual_seed(1)
    w = torch.randn(4, 3)

    def cumulative(x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x @ w.t(), dim=1)

    x = torch.randn(1, 5, 3)
    expected = np.tril(np.ones((5, 5))) * np.linalg.norm(w.numpy())
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(sensitivity_matrix(cumulative, x, mode=mode)[0].numpy(), expected, rtol=1e-6)
    jac = sequential_jacobian(cumulative, x, 2)[0]  # [K, T, D]
    np.testing.assert_allclose(jac[:, :3].numpy(), np.repeat(w.numpy()[:, None], 3, axis=1), rtol=1e-6)


def test_heed_core_through_a_wrapper():
    from heed.agents.cores.lstm import LSTMConfig, LSTMCore

    torch.manual_seed(2)
    core = LSTMCore(3, LSTMConfig(hidden_size=4)).eval()

    def fn(x):
        return core.unroll(x)[0]

    x = torch.randn(2, 5, 3)
    ref = _reference(fn, x)
    torch.testing.assert_close(sequential_jacobian(fn, x, 4), ref[:, 4])
    torch.testing.assert_close(sensitivity_matrix(fn, x), ref.pow(2).sum((2, 4)).sqrt())


def test_inputs_not_mutated_and_requires_grad_kept(rnn):
    x = torch.randn(2, 4, 3, requires_grad=True)
    before = x.detach().clone()
    sequential_jacobian(rnn, x, 1)
    sensitivity_matrix(rnn, x)
    assert x.requires_grad and x.grad is None and torch.equal(x.detach(), before)
    y = torch.randn(2, 4, 3)
    sensitivity_matrix(rnn, y, mode="reverse")
    assert not y.requires_grad


def test_bad_inputs_get_clear_errors(rnn):
    with pytest.raises(AnalysisError, match=r"\[B, T, D\]"):
        sequential_jacobian(rnn, torch.randn(4, 3), 0)
    with pytest.raises(AnalysisError, match="out of range"):
        sequential_jacobian(rnn, torch.randn(1, 4, 3), 4)
    with pytest.raises(AnalysisError, match="could not take inputs"):
        sensitivity_matrix(rnn, torch.randn(1, 4, 2))
    with pytest.raises(AnalysisError, match="mode"):
        sensitivity_matrix(rnn, torch.randn(1, 4, 3), mode="sideways")


def test_trained_cue_lstm_lights_up_at_the_cue():
    from heed.analysis.sequential import cue_sensitivity_ratio
    from heed.scripts.sequential_jacobian import cue_batch, train_cue_lstm

    model, metrics = train_cue_lstm(steps=8, hidden=16, updates=200, batch_size=32, seed=0)
    assert metrics["mse"] < 0.05 < metrics["baseline_mse"]
    x = cue_batch(4, 8, 2, np.random.default_rng(3)).inputs
    sens = sensitivity_matrix(model, x).mean(0)
    assert cue_sensitivity_ratio(sens) > 2.0
