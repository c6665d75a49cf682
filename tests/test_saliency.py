"""Saliency: analytic models, batched vs per-frame paths, heed vs Captum, no input mutation, clear errors."""

import pytest
import torch
from torch import nn

from heed.analysis import (
    AnalysisError,
    captum_saliency,
    dueling_saliency,
    jacobian_saliency,
    multi_target_saliency,
    perturbation_saliency,
)
from heed.analysis.saliency import gaussian_blur

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear(d: int = 7, k: int = 3) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(d, k)


@pytest.fixture(scope="module")
def qnet():
    from heed.agents.networks import build_q_network

    torch.manual_seed(1)
    return build_q_network((4, 84, 84), 5).eval()


def test_linear_saliency_is_abs_weight_row():
    lin = _linear()
    x = torch.randn(4, 7)
    for k in range(3):
        sal = jacobian_saliency(lin, x, target=k)
        assert sal.shape == x.shape
        torch.testing.assert_close(sal, lin.weight[k].abs().expand(4, 7))
    per_row = torch.tensor([2, 0, 1, 2])
    torch.testing.assert_close(jacobian_saliency(lin, x, target=per_row), lin.weight[per_row].abs().detach())
    signed = jacobian_saliency(lin, x, target=1, absolute=False)
    torch.testing.assert_close(signed, lin.weight[1].detach().expand(4, 7))


def test_default_target_is_argmax():
    lin = _linear()
    x = torch.randn(6, 7)
    best = lin(x).argmax(1)
    torch.testing.assert_close(jacobian_saliency(lin, x), lin.weight[best].abs().detach())


def test_multi_target_matches_per_target_and_per_frame():
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4))
    x = torch.randn(3, 5)
    multi = multi_target_saliency(mlp, x, [0, 2, 3])  # [B, M, D]
    assert multi.shape == (3, 3, 5)
    for m, k in enumerate([0, 2, 3]):
        batched = jacobian_saliency(mlp, x, target=k)
        torch.testing.assert_close(multi[:, m], batched)
        for b in range(3):  # one frame at a time
            torch.testing.assert_close(jacobian_saliency(mlp, x[b : b + 1], target=k)[0], batched[b])


def test_dueling_saliency_matches_each_stream(qnet):
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    sal = dueling_saliency(qnet.value, qnet.advantage, obs, streams_fn=qnet.streams)
    assert sal.value.shape == obs.shape and sal.advantage.shape == obs.shape
    with torch.no_grad():
        best = qnet.advantage(obs).argmax(1)
    torch.testing.assert_close(sal.value, jacobian_saliency(qnet.value, obs))
    torch.testing.assert_close(sal.advantage, jacobian_saliency(qnet.advantage, obs, target=best))
    two_pass = dueling_saliency(qnet.value, qnet.advantage, obs)  # without the shared-trunk shortcut
    torch.testing.assert_close(two_pass.value, sal.value)
    assert sal.value.sum() > 0 and not torch.equal(sal.value, sal.advantage)


def test_heed_and_captum_agree(qnet):
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    ours = jacobian_saliency(qnet.advantage, obs, target=1)
    torch.testing.assert_close(captum_saliency(qnet.advantage, obs, "Saliency", target=1), ours)
    signed = jacobian_saliency(qnet.advantage, obs, target=1, absolute=False)
    ixg = captum_saliency(qnet.advantage, obs, "InputXGradient", target=1)
    torch.testing.assert_close(ixg, obs.float() * signed)
    gbp = captum_saliency(qnet.value, obs, "GuidedBackprop", target=0)
    assert gbp.shape == obs.shape and gbp.abs().sum() > 0


def test_captum_methods_on_linear_model():
    lin = _linear()
    x = torch.randn(3, 7)
    ig = captum_saliency(lin, x, "IntegratedGradients", target=2, n_steps=8)
    torch.testing.assert_close(ig, x * lin.weight[2].detach(), rtol=1e-4, atol=1e-5)  # exact for a linear map
    sg = captum_saliency(lin, x, "NoiseTunnel", target=2)
    torch.testing.assert_close(sg, lin.weight[2].abs().detach().expand(3, 7))  # gradient is constant
    occ = captum_saliency(lin, x, "Occlusion", target=2)
    torch.testing.assert_close(occ, x * lin.weight[2].detach(), rtol=1e-4, atol=1e-5)


def test_unknown_captum_method():
    with pytest.raises(AnalysisError, match="Did you mean: IntegratedGradients"):
        captum_saliency(_linear(), torch.randn(2, 7), "IntegratedGradient")


def test_inputs_not_mutated_and_requires_grad_kept():
    lin = _linear()
    x = torch.randn(4, 7, requires_grad=True)
    before = x.detach().clone()
    jacobian_saliency(lin, x, target=0)
    multi_target_saliency(lin, x, [0, 1])
    captum_saliency(lin, x, "Saliency", target=0)
    assert x.requires_grad and x.grad is None and torch.equal(x.detach(), before)
    y = torch.randn(4, 7)
    jacobian_saliency(lin, y, target=0)
    assert not y.requires_grad
    pixels = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    copy = pixels.clone()
    perturbation_saliency(lambda z: z.mean((1, 2, 3))[:, None], pixels, stride=12)
    assert torch.equal(pixels, copy) and pixels.dtype == torch.uint8


def test_wrong_observation_shape_is_a_clear_error(qnet):
    with pytest.raises(AnalysisError, match=r"takes observations shaped \(4, 84, 84\)"):
        jacobian_saliency(qnet.value, torch.zeros(2, 3, 84, 84))
    with pytest.raises(AnalysisError, match=r"takes observations shaped"):
        dueling_saliency(qnet.value, qnet.advantage, torch.zeros(1, 4, 64, 64))
    with pytest.raises(AnalysisError, match=r"could not take inputs shaped \(2, 5\)"):
        jacobian_saliency(_linear(), torch.zeros(2, 5))
    with pytest.raises(AnalysisError, match="out of range"):
        jacobian_saliency(_linear(), torch.zeros(2, 7), target=3)


def test_perturbation_saliency_finds_the_region_the_model_reads():
    torch.manual_seed(3)
    x = torch.rand(2, 1, 40, 40) * 255

    def reads_corner(z: torch.Tensor) -> torch.Tensor:  # depends only on the top-left 8x8 patch
        return z[:, :, :8, :8].reshape(z.shape[0], -1)[:, :16]

    sal = perturbation_saliency(reads_corner, x, batch_size=20)
    assert sal.shape == x.shape
    assert (sal[:, 0, :6, :6].mean((1, 2)) > 100 * sal[:, 0, -6:, -6:].mean((1, 2)).clamp_min(1e-12)).all()
    with pytest.raises(AnalysisError, match=r"\[B, C, H, W\]"):
        perturbation_saliency(_linear(), torch.zeros(2, 7))


def test_gaussian_blur_keeps_constant_images():
    img = torch.full((1, 2, 12, 15), 3.5)
    torch.testing.assert_close(gaussian_blur(img, 3.0), img)
