"""ACT: halting distribution, ponder cost gradient, the wrapped core, the models in the table of parts."""

import numpy as np
import pytest
import torch

from heed.agents.cores.act import ACTConfig, ACTCore, halting_distribution
from heed.agents.cores.rnn import RNNConfig
from heed.agents.parts import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_halting(h: np.ndarray, eps: float) -> tuple[np.ndarray, float, int]:
    """Independent reference: the paper's N(t), R(t), p^n and rho for one row of halting probs."""
    max_steps = len(h)
    n_halt = max_steps
    for n in range(1, max_steps + 1):
        if h[:n].sum() >= 1 - eps:
            n_halt = n
            break
    remainder = 1 - h[: n_halt - 1].sum()
    p = np.zeros(max_steps)
    p[: n_halt - 1] = h[: n_halt - 1]
    p[n_halt - 1] = remainder
    return p, n_halt + remainder, n_halt


@pytest.mark.parametrize("max_steps", [1, 3, 8])
def test_halting_matches_numpy_and_sums_to_one(max_steps):
    g = torch.Generator().manual_seed(0)
    h = torch.rand(64, max_steps, generator=g, dtype=torch.float64) * 0.6
    p, ponder, steps = halting_distribution(h, eps=0.01)
    torch.testing.assert_close(p.sum(1), torch.ones(64, dtype=torch.float64))
    for b in range(64):
        ref_p, ref_rho, ref_n = numpy_halting(h[b].numpy(), 0.01)
        np.testing.assert_allclose(p[b].numpy(), ref_p, atol=1e-12)
        assert ponder[b].item() == pytest.approx(ref_rho)
        assert steps[b].item() == ref_n


def test_ponder_gradient_analytic_and_finite_difference():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 6, generator=g, dtype=torch.float64, requires_grad=True)
    _, ponder, steps = halting_distribution(torch.sigmoid(logits), eps=0.01)
    ponder.sum().backward()
    h = torch.sigmoid(logits.detach())
    # rho = N + 1 - sum_{n<N} h^n  =>  d rho / d logit_n = -h(1-h) for n < N, else 0
    n_idx = torch.arange(1, 7)[None, :]
    analytic = torch.where(n_idx < steps[:, None], -h * (1 - h), torch.zeros_like(h))
    torch.testing.assert_close(logits.grad, analytic)
    # finite differences (N stays constant for small perturbations away from the threshold)
    eps = 1e-6
    for b, n in [(0, 0), (3, 1), (7, 0), (11, 2)]:
        plus, minus = logits.detach().clone(), logits.detach().clone()
        plus[b, n] += eps
        minus[b, n] -= eps
        fd = (
            halting_distribution(torch.sigmoid(plus))[1][b] - halting_distribution(torch.sigmoid(minus))[1][b]
        ) / (2 * eps)
        assert fd.item() == pytest.approx(logits.grad[b, n].item(), abs=1e-6)
    assert analytic.abs().sum() > 0  # some rows ponder more than one step


def test_act_core_weights_sum_to_one_and_mean_field():
    torch.manual_seed(0)
    core = ACTCore(5, ACTConfig(hidden_size=16, max_steps=6, eps=0.01, halting_bias=-1.0))
    xs = torch.randn(4, 7, 5)
    out, _state, att = core.unroll(xs)
    assert out.shape == (4, 7, 16) and att["halting"].shape == (4, 7, 6) and att["ponder"].shape == (4, 7)
    torch.testing.assert_close(att["halting"].sum(-1), torch.ones(4, 7))
    steps = (att["halting"] > 0).sum(-1)
    assert (att["ponder"] > steps).all() and (att["ponder"] <= steps + 1).all()  # rho = N + R, 0 < R <= 1
    assert steps.max() > 1  # a negative halting bias makes it ponder
    # step 0 by hand: run the cell with the flag, mix the states with p^n
    h, states = torch.zeros(4, 16), []
    for n in range(6):
        flag = torch.full((4, 1), 1.0 if n == 0 else 0.0)
        h = core.inner.cell(torch.cat([xs[:, 0], flag], -1), h)
        states.append(h)
    mixed = (att["halting"][:, 0, :, None] * torch.stack(states, 1)).sum(1)
    torch.testing.assert_close(out[:, 0], mixed)


def test_act_lstm_cell_averages_both_h_and_c():
    """cell="lstm": each ponder step is an LSTM step (checked with torch's LSTMCell on the same
    weights), the next input step starts from the p-weighted mean of h AND of c (Graves 2016)."""
    torch.manual_seed(0)
    core = ACTCore(5, ACTConfig(hidden_size=8, max_steps=4, halting_bias=-1.0, cell="lstm"))
    lstm = core.inner.lstm
    ref = torch.nn.LSTMCell(6, 8)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name).copy_(getattr(lstm, name + "_l0"))
    xs = torch.randn(3, 2, 5)
    out, state, att = core.unroll(xs)
    torch.testing.assert_close(att["halting"].sum(-1), torch.ones(3, 2))
    h, c = torch.zeros(3, 8), torch.zeros(3, 8)
    for t in range(2):
        hs, cs, hn, cn = [], [], h, c
        for n in range(4):
            flag = torch.full((3, 1), 1.0 if n == 0 else 0.0)
            hn, cn = ref(torch.cat([xs[:, t], flag], -1), (hn, cn))
            hs.append(hn)
            cs.append(cn)
        p = att["halting"][:, t, :, None]  # [B, M, 1], zero after halting
        h, c = (p * torch.stack(hs, 1)).sum(1), (p * torch.stack(cs, 1)).sum(1)
        torch.testing.assert_close(out[:, t], h)
    torch.testing.assert_close(state[1], c)  # the averaged cell state is carried on
    assert (att["halting"] > 0).sum(-1).max() > 1  # it pondered


def test_act_large_bias_is_one_step_rnn():
    torch.manual_seed(0)
    core = ACTCore(3, ACTConfig(hidden_size=8, max_steps=5, halting_bias=50.0))
    xs = torch.randn(2, 4, 3)
    out, _, att = core.unroll(xs)
    h, ref = torch.zeros(2, 8), []
    for t in range(4):
        h = core.inner.cell(torch.cat([xs[:, t], torch.ones(2, 1)], -1), h)
        ref.append(h)
    torch.testing.assert_close(out, torch.stack(ref, 1))
    torch.testing.assert_close(att["ponder"], torch.full((2, 4), 2.0))  # N = 1, R = 1


def test_models_registered_and_ponder_cost():
    torch.manual_seed(0)
    model = build_model(ACTConfig(hidden_size=16, tau=0.1, max_steps=10), 64, 1)
    x = torch.randn(3, 2, 64)
    logits, att, aux = model(x)
    assert logits.shape == (3, 2, 1)
    assert aux.item() == pytest.approx(0.1 * att["ponder"].sum(1).mean().item())
    plain = build_model(RNNConfig(hidden_size=16), 64, 1)
    logits, att, aux = plain(x)
    assert logits.shape == (3, 2, 1) and aux.item() == 0.0


def test_tiny_training_reduces_loss():
    torch.manual_seed(0)
    model = build_model(ACTConfig(hidden_size=16, tau=0.01, max_steps=5), 4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(16, 1, 4)
    y = (x.sum(-1, keepdim=True) > 0).float()
    losses = []
    for _ in range(30):
        logits, _, aux = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad()
        (loss + aux).backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.core.halt.weight.grad.abs().sum() > 0  # the ponder cost reaches the halting unit
