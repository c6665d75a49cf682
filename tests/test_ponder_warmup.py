"""UT + ACT levers against the story's collapse to N = 1 (docs/ponder.md): a ponder-cost warm-up
(``tau_warmup`` / ``tau_ramp``) and a halting unit reading ``LayerNorm(s^n)`` (``halting_norm``)."""

import pytest
import torch

from heed.agents.transformer import UniversalTransformer, UTACTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kw) -> UniversalTransformer:
    torch.manual_seed(0)
    return UniversalTransformer(5, 3, UTACTConfig(d_model=16, heads=2, depth=4, halting_bias=-1.0, **kw))


def _inputs() -> torch.Tensor:
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(1))
    x[1, 4:] = 0.0  # two padding steps in the second sequence
    return x


def _mean_rho(ponder: torch.Tensor) -> float:
    """The cost's average by hand: sequence 0 has 6 real steps, sequence 1 has 4."""
    ponder = ponder.detach()
    return 0.5 * (float(ponder[0].sum()) / 6 + float(ponder[1, :4].sum()) / 4)


def test_ponder_cost_is_zero_in_the_warm_up_then_ramps_to_tau():
    tau = 0.5
    model = _model(tau=tau, tau_warmup=2, tau_ramp=4)
    expected = [0.0, 0.0, tau / 4, tau / 2, 3 * tau / 4, tau, tau, tau]  # by hand, updates 0..7
    for weight in expected:
        _, att, aux = model(_inputs())
        assert float(aux.detach()) == pytest.approx(weight * _mean_rho(att["ponder"]), rel=1e-6, abs=1e-12)
    assert int(model.tau_updates) == len(expected)


def test_step_warm_up_without_ramp():
    model = _model(tau=0.1, tau_warmup=3)
    weights = []
    for _ in range(5):
        _, att, aux = model(_inputs())
        weights.append(float(aux.detach()) / _mean_rho(att["ponder"]))
    assert weights == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.1])


def test_evaluation_and_no_grad_passes_do_not_count_and_the_count_is_saved():
    model = _model(tau=0.2, tau_warmup=1)
    model(_inputs())  # one update: the warm-up is over
    with torch.no_grad():
        model(_inputs())
    model.eval()
    _, att, aux = model(_inputs())
    assert int(model.tau_updates) == 1
    assert float(aux.detach()) == pytest.approx(0.2 * _mean_rho(att["ponder"]))
    resumed = _model(tau=0.2, tau_warmup=1)
    resumed.load_state_dict(model.state_dict())
    assert int(resumed.tau_updates) == 1


def test_defaults_keep_todays_parameters_and_cost():
    plain = _model(tau=0.3)
    assert "tau_updates" not in plain.state_dict() and plain.halt_norm is None
    assert not any(k.startswith("halt_norm") for k in plain.state_dict())
    _, att, aux = plain(_inputs())
    assert float(aux.detach()) == pytest.approx(0.3 * _mean_rho(att["ponder"]))


def test_halting_reads_the_layer_norm_of_the_block_output():
    model = _model(tau=0.0, halting_norm=True)
    outputs = []
    model.block.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].detach()))
    _, att, _ = model(_inputs())
    s1 = outputs[0]  # [B, T, d]: the first step's block output
    normed = (s1 - s1.mean(-1, keepdim=True)) / torch.sqrt(s1.var(-1, unbiased=False, keepdim=True) + 1e-5)
    h1 = torch.sigmoid(normed @ model.halt.weight[0] + model.halt.bias[0])  # [B, T]
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    assert bool((h1[real] < 0.99).all())  # none halts at step 1, so p^1 = h^1
    torch.testing.assert_close(att["halting"][..., 0][real], h1[real], rtol=1e-5, atol=1e-6)
    # ... so it does not change when the block output is scaled
    torch.testing.assert_close(torch.sigmoid(model.halt(model.halt_norm(3.0 * s1))).squeeze(-1), h1,
                               rtol=1e-5, atol=1e-6)
