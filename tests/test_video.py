"""Video composition, writing (mp4/GIF decode back), map options, every method through the pipeline, figures."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch import nn

from heed.analysis import SALIENCY_METHODS, AnalysisError
from heed.analysis.agent_video import Recording, render_recording, stream_saliency, summarize
from heed.analysis.figures import figure_to_array, log_image, plot_sensitivity
from heed.analysis.video import (
    GAME_FPS,
    FrameInfo,
    MapOptions,
    compose_frame,
    percentile_scale,
    smooth_over_time,
    stack_to_maps,
    wang_panel,
    write_video,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("h,w", [(48, 64), (50, 70)])
def test_mp4_decodes_with_frame_count_and_size(tmp_path, h, w):
    path = write_video(tmp_path / "v.mp4", _frames(7, h, w), fps=10)
    frames = np.stack(list(iio.imiter(path)))
    assert frames.shape[0] == 7
    assert frames.shape[1:] == (-(-h // 16) * 16, -(-w // 16) * 16, 3)  # padded to macroblocks, not rescaled


def test_gif_decodes_with_frame_count_and_size(tmp_path):
    src = _frames(5, 30, 40)
    path = write_video(tmp_path / "v.gif", src, fps=10)
    frames = np.stack(list(iio.imiter(path)))
    assert frames.shape[:3] == (5, 30, 40)


def test_bad_video_path_and_empty_video(tmp_path):
    with pytest.raises(AnalysisError, match=r"\.mp4 or \.gif"):
        write_video(tmp_path / "v.avi", _frames(1, 16, 16))
    with pytest.raises(AnalysisError, match="no frames"):
        write_video(tmp_path / "v.mp4", [])
    assert not (tmp_path / "v.mp4").exists()


def test_wang_panel_channels():
    rgb = np.full((4, 5, 3), 128, np.uint8)
    sal = np.zeros((4, 5), np.float32)
    sal[1, 2] = 1.0
    panel = wang_panel(rgb, sal)
    assert panel[1, 2, 0] == 255 and panel[0, 0, 0] == 0  # saliency in red
    assert (panel[..., 1] == panel[..., 2]).all() and panel[0, 0, 1] == int(128 / 255 * 255)  # grey in G and B


def test_compose_frame_sizes_and_stable_scale():
    rgb = np.zeros((210, 160, 3), np.uint8)
    maps = np.random.default_rng(1).random((3, 84, 84)).astype(np.float32)
    scales = (percentile_scale(maps), percentile_scale(maps * 2))
    info = FrameInfo(step=3, episode_return=-2.0, value=0.5, action="FIRE")
    panels = compose_frame(rgb, maps[0], maps[1], scales, info, "panels")
    overlay = compose_frame(rgb, maps[0], maps[1], scales, info, "overlay")
    assert panels.shape == (34 + 420, 2 * 320 + 8, 3) and overlay.shape == (34 + 420, 320, 3)
    assert panels[:34].max() == 255  # text drawn in the bar
    np.testing.assert_allclose(scales[1], 2 * scales[0], rtol=1e-6)
    assert percentile_scale(np.zeros((2, 4, 4))) == 1.0
    with pytest.raises(AnalysisError):
        compose_frame(rgb, maps[0], maps[1], scales, info, "sideways")


def test_stack_to_maps_options():
    sal = np.ones((2, 4, 3, 3), np.float32)
    sal[:, 0] = -2.0
    sal[:, -1, 1, 1] = 5.0
    np.testing.assert_array_equal(stack_to_maps(sal)[:, 0, 0], [5.0, 5.0])  # default: sum of |.| over frames
    newest = stack_to_maps(sal, MapOptions("newest"))
    assert newest.shape == (2, 3, 3) and newest[0, 1, 1] == 5.0 and newest[0, 0, 0] == 1.0
    signed = stack_to_maps(sal, MapOptions("stack", absolute=False))
    assert signed[0, 0, 0] == 1.0  # -2 + 1 + 1 + 1
    blurred = stack_to_maps(sal, MapOptions("newest", space_sigma=1.0))
    assert blurred[0, 1, 1] < 5.0 and blurred[0, 0, 0] > 1.0  # the peak spreads to its neighbours


def test_smooth_over_time_is_a_centred_moving_average():
    maps = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    out = smooth_over_time(maps, 3)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 1.0, 2.0, 3.0, 3.0])  # windows stay inside the video
    np.testing.assert_array_equal(smooth_over_time(maps, 1), maps)
    with pytest.raises(AnalysisError):
        smooth_over_time(maps, 0)


class TinyDueling(nn.Module):
    """A dueling network on ``[4, 16, 16]`` stacks, small enough to push every method through the video."""

    def __init__(self, n_actions: int = 3) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.trunk = nn.Sequential(nn.Conv2d(4, 4, 4, stride=2), nn.ReLU(), nn.Flatten())
        self.v = nn.Linear(4 * 7 * 7, 1)
        self.a = nn.Linear(4 * 7 * 7, n_actions)

    def value(self, obs):
        return self.v(self.trunk(obs.float() / 255))

    def advantage(self, obs):
        return self.a(self.trunk(obs.float() / 255))

    def streams(self, obs):
        phi = self.trunk(obs.float() / 255)
        return self.v(phi), self.a(phi)


def _recording(n: int) -> Recording:
    rng = np.random.default_rng(2)
    rec = Recording()
    for i in range(n):
        rec.frames.append(rng.integers(0, 256, (210, 160, 3), dtype=np.uint8))
        rec.obs.append(rng.integers(0, 256, (4, 16, 16), dtype=np.uint8))
        rec.actions.append(i % 3)
        rec.values.append(0.1 * i)
        rec.returns.append(0.0)
    return rec


@pytest.mark.parametrize("method", list(SALIENCY_METHODS))
def test_every_method_makes_a_decodable_video_of_the_asked_length(tmp_path, method):
    rec = _recording(3)
    opts = MapOptions("newest", time_window=2)
    sal_v, sal_a = stream_saliency(TinyDueling(), rec.obs, method, opts, batch_size=2, progress=False)
    assert sal_v.shape == sal_a.shape == (3, 16, 16) and (sal_v >= 0).all() and sal_v.sum() > 0
    path = render_recording(rec, sal_v, sal_a, tmp_path / f"{method}.mp4", "panels", progress=False, method=method)
    assert np.stack(list(iio.imiter(path))).shape[0] == 3
    gif = render_recording(rec, sal_v, sal_a, tmp_path / "o.gif", "overlay", max_frames=2, zoom=1, progress=False)
    assert np.stack(list(iio.imiter(gif))).shape[:3] == (2, 34 + 210, 160)


def test_video_plays_at_game_speed_and_summary_has_focus(tmp_path):
    rec = _recording(4)
    sal_v, sal_a = stream_saliency(TinyDueling(), rec.obs, "gradient", progress=False)
    path = render_recording(rec, sal_v, sal_a, tmp_path / "v.mp4", progress=False)
    import imageio.v2 as imageio

    reader = imageio.get_reader(path)
    assert reader.get_meta_data()["fps"] == pytest.approx(GAME_FPS)  # one frame per agent step, 15 steps/s
    reader.close()
    summary = summarize(rec, sal_v, sal_a, "ALE/Pong-v5")
    assert set(summary["focus"]) >= {"value", "advantage", "value_advantage_correlation"}
    assert summarize(rec, sal_v, sal_a, "ALE/Qbert-v5")["focus"] is None


def test_perturbation_in_the_pipeline_replaces_by_the_recording_background_or_blurs():
    from heed.analysis.perturbation import episode_background, perturbation_saliency

    rec, net = _recording(5), TinyDueling()
    obs = np.stack(rec.obs)
    sal_v, sal_a = stream_saliency(net, obs, "perturbation", progress=False, replace="background")  # finer grid
    ref = perturbation_saliency(net.value, torch.as_tensor(obs), 0, stride=4, radius=3.0, newest_only=True,
                                background=episode_background(obs))
    np.testing.assert_allclose(sal_v, ref[:, -1].abs().numpy(), rtol=1e-4, atol=1e-7)
    blur_v, _ = stream_saliency(net, obs, "perturbation", stride=4, progress=False)  # default: blur
    np.testing.assert_allclose(blur_v, perturbation_saliency(net.value, torch.as_tensor(obs), 0, stride=4)[:, -1].numpy(),
                               rtol=1e-4, atol=1e-7)
    with pytest.raises(AnalysisError, match="unknown replacement 'smudge'"):
        stream_saliency(net, obs, "perturbation", progress=False, replace="smudge")


def test_unknown_method_in_the_pipeline(tmp_path):
    with pytest.raises(AnalysisError, match="Did you mean: guided-backprop"):
        stream_saliency(TinyDueling(), _recording(1).obs, "guided-backprob", progress=False)


def test_sensitivity_figure_and_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    mat = np.tril(np.ones((6, 6)))
    fig = plot_sensitivity(mat, np.ones((6, 3)), t=5, marks={"cue": 0})
    assert fig.axes[0].get_xlabel() == "input time s" and fig.axes[0].get_ylabel() == "output time t"
    img = figure_to_array(fig)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    writer = SummaryWriter(str(tmp_path))
    log_image(writer, "fig", img)
    writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    with pytest.raises(AnalysisError):
        plot_sensitivity(np.ones(5))
