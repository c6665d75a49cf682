"""Saliency: every method on analytic models, batched vs per-frame paths, heed vs Captum, no input mutation, clear errors."""

import pytest
import torch
from torch import nn

from heed.analysis import (
    SALIENCY_METHODS,
    AnalysisError,
    captum_saliency,
    dueling_saliency,
    jacobian_saliency,
    multi_target_saliency,
    perturbation_saliency,
)
from heed.analysis.perturbation import episode_background, gaussian_blur, perturbation_masks
from heed.analysis.saliency_methods import get_saliency_method

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


class LinearImage(nn.Module):
    """``y = W flatten(x) + b`` on images ``[B, C, H, W]``: every attribution has a closed form."""

    def __init__(self, shape=(2, 10, 10), k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.shape = shape
        self.lin = nn.Linear(int(torch.tensor(shape).prod()), k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))

    def row(self, t: int) -> torch.Tensor:
        return self.lin.weight[t].detach().view(1, *self.shape)


@pytest.mark.parametrize("name", list(SALIENCY_METHODS))
def test_every_method_has_the_signature_and_the_input_shape(name):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    x = torch.rand(2, 2, 10, 10) * 255
    before = x.clone()
    method = get_saliency_method(name)
    one = method(net, x, 1)
    assert one.shape == x.shape and torch.isfinite(one).all() and one.abs().sum() > 0
    assert method(net, x).shape == x.shape  # None -> each row's argmax
    both = method(net, x, torch.tensor([[0, 2], [1, 2]]))  # [B, M]: M targets per row
    assert both.shape == (2, 2, *x.shape[1:])
    torch.testing.assert_close(both[:, 1], method(net, x, 2), rtol=1e-4, atol=1e-5)
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", ["gradient", "captum-gradient", "smoothgrad", "captum-smoothgrad"])
def test_gradient_methods_on_a_linear_map_give_the_weight_row(name):
    lin, x = LinearImage(), torch.randn(3, 2, 10, 10)
    torch.testing.assert_close(get_saliency_method(name)(lin, x, 2), lin.row(2).expand_as(x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gradient-x-input", "captum-gradient-x-input", "integrated-gradients",
                                  "captum-integrated-gradients"])
def test_input_times_gradient_methods_on_a_linear_map(name):
    lin, x = LinearImage(), torch.randn(3, 2, 10, 10)
    torch.testing.assert_close(get_saliency_method(name)(lin, x, 1), x * lin.row(1), rtol=1e-4, atol=1e-5)


def test_integrated_gradients_baseline_and_completeness():
    from heed.analysis.saliency_methods import integrated_gradients

    lin, x = LinearImage(), torch.randn(2, 2, 10, 10)
    ig = integrated_gradients(lin, x, 0, baseline=0.5)
    torch.testing.assert_close(ig, (x - 0.5) * lin.row(0), rtol=1e-4, atol=1e-5)
    torch.manual_seed(6)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(200, 16), nn.Tanh(), nn.Linear(16, 2))
    ig = integrated_gradients(mlp, x, 1, steps=64)  # completeness: sum IG = f(x) - f(0)
    with torch.no_grad():
        gap = mlp(x)[:, 1] - mlp(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(ig.sum((1, 2, 3)), gap, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("name", ["guided-backprop", "captum-guided-backprop"])
def test_guided_backprop_stops_negative_gradients(name):
    torch.manual_seed(7)
    hidden, readout = nn.Linear(12, 5), nn.Linear(5, 1)
    net = nn.Sequential(hidden, nn.ReLU(), readout)
    x = torch.randn(4, 12)
    with torch.no_grad():
        on = (hidden(x) > 0).float()  # [B, 5]
    v = readout.weight.detach()[0]
    expected = (on * v.clamp_min(0)) @ hidden.weight.detach()  # W^T ((Wx > 0) max(v, 0))
    torch.testing.assert_close(get_saliency_method(name)(net, x, 0), expected, rtol=1e-4, atol=1e-6)
    plain = (on * v) @ hidden.weight.detach()
    torch.testing.assert_close(get_saliency_method("gradient")(net, x, 0), plain, rtol=1e-4, atol=1e-6)
    with pytest.raises(AnalysisError, match="nn.ReLU"):
        get_saliency_method("guided-backprop")(nn.Linear(12, 2), x, 0)


def test_occlusion_on_a_linear_map_matches_captum_and_the_closed_form():
    lin, x = LinearImage(), torch.randn(2, 2, 10, 10)
    occ = get_saliency_method("occlusion")(lin, x, 0, window=1, stride=1)
    torch.testing.assert_close(occ, (x * lin.row(0)).sum(1, keepdim=True).expand_as(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(get_saliency_method("occlusion")(lin, x, 0),  # 5x5 boxes tile 10x10
                               get_saliency_method("captum-occlusion")(lin, x, 0), rtol=1e-4, atol=1e-5)


def test_perturbation_on_a_linear_map_is_half_the_squared_masked_change():
    lin, x = LinearImage(), torch.rand(2, 2, 10, 10) * 255
    sal = perturbation_saliency(lin, x, 2, radius=2.0, stride=1, blur_sigma=1.0)  # stride 1: no upsampling
    masks, _, _ = perturbation_masks(10, 10, 2.0, 1)  # [100, 10, 10]
    change = x - gaussian_blur(x, 1.0)  # y(I) - y(I') = w . (M (I - blur I))
    expected = 0.5 * torch.einsum("bchw,nhw,chw->bn", change, masks, lin.row(2)[0]).pow(2)
    torch.testing.assert_close(sal[:, 0], expected.view(2, 10, 10), rtol=1e-3, atol=1e-3)
    assert torch.equal(sal[:, 0], sal[:, 1])  # one map for every stacked frame


def test_perturbation_towards_a_background_is_half_the_squared_masked_difference():
    lin, x = LinearImage(), torch.rand(2, 2, 10, 10) * 255
    bg = torch.rand(10, 10) * 255
    sal = perturbation_saliency(lin, x, 1, radius=2.0, stride=1, background=bg)
    masks, _, _ = perturbation_masks(10, 10, 2.0, 1)
    expected = 0.5 * torch.einsum("bchw,nhw,chw->bn", x - bg, masks, lin.row(1)[0]).pow(2)
    torch.testing.assert_close(sal[:, 0], expected.view(2, 10, 10), rtol=1e-3, atol=1e-3)
    same = perturbation_saliency(lin, bg.expand(2, 2, 10, 10), 1, stride=2, background=bg)
    assert same.abs().max() < 1e-6  # nothing but background: removing nothing changes nothing
    with pytest.raises(AnalysisError, match="does not fit"):
        perturbation_saliency(lin, x, 1, background=torch.zeros(9, 10))
    with pytest.raises(AnalysisError, match="does not fit"):
        perturbation_saliency(lin, x, 1, background=torch.zeros(3, 10, 10))  # 3 channels for 2


def test_episode_background_removes_a_moving_object_and_keeps_the_static_screen():
    screen = torch.zeros(10, 10, dtype=torch.uint8)
    screen[0] = 200  # a static wall
    obs = screen.repeat(30, 4, 1, 1)  # [30, 4, 10, 10]
    for t in range(30):
        for c in range(4):  # a ball moving along row 5, one column per frame
            obs[t, c, 5, (t + c) % 10] = 255
    bg = episode_background(obs)
    assert bg.shape == (10, 10) and torch.equal(bg, screen.float())
    assert torch.equal(episode_background(obs, max_frames=7), screen.float())
    night = obs.clone()
    night[15:] = night[15:] // 2  # the scene changes halfway: each block gets its own background
    blocks = episode_background(night, window=15)
    assert blocks.shape == (30, 10, 10)
    assert torch.equal(blocks[:15], screen.float().expand(15, -1, -1)) and torch.equal(blocks[15:], (screen // 2).float().expand(15, -1, -1))
    with pytest.raises(AnalysisError, match=r"\[N, C, H, W\]"):
        episode_background(obs[0])


def test_unknown_method_name_is_one_line_with_close_matches():
    with pytest.raises(AnalysisError, match="Did you mean: integrated-gradients") as info:
        get_saliency_method("integrated-gradient")
    assert "\n" not in str(info.value) and "perturbation" in str(info.value)
    with pytest.raises(AnalysisError, match="Did you mean: smoothgrad"):
        dueling_saliency(_linear(), _linear(), torch.zeros(1, 7), method="smoothgrads")


@pytest.mark.parametrize("name", [m for m in SALIENCY_METHODS if not m.startswith("captum-")])
def test_dueling_maps_by_every_method_explain_v_and_the_best_action(name, qnet):
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    opts = {"stride": 21, "window": 21} if name == "occlusion" else {"stride": 21} if name == "perturbation" else {}
    sal = dueling_saliency(qnet.value, qnet.advantage, obs, qnet.streams, name, absolute=False, **opts)
    assert sal.value.shape == obs.shape and sal.advantage.shape == obs.shape
    with torch.no_grad():
        best = qnet.advantage(obs).argmax(1)
    method = get_saliency_method(name)
    torch.testing.assert_close(sal.value, method(qnet.value, obs, 0, **opts), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(sal.advantage, method(qnet.advantage, obs, best, **opts), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["occlusion", "perturbation"])
def test_newest_only_perturbs_and_attributes_the_last_frame(name):
    lin, x = LinearImage(), torch.rand(2, 2, 10, 10) * 255
    sal = get_saliency_method(name)(lin, x, 0, newest_only=True, stride=2)
    assert sal[:, 0].abs().sum() == 0 and sal[:, 1].abs().sum() > 0
    if name == "occlusion":  # 1x1 boxes on the newest frame only: the drop is w * x of that frame
        occ = get_saliency_method(name)(lin, x, 0, newest_only=True, window=1, stride=1)
        torch.testing.assert_close(occ[:, 1], (x * lin.row(0))[:, 1], rtol=1e-4, atol=1e-4)
