"""Video composition, writing (mp4/GIF decode back), region statistics and figures."""

import imageio.v3 as iio
import numpy as np
import pytest

from heed.analysis import AnalysisError
from heed.analysis.figures import figure_to_array, log_image, plot_sensitivity
from heed.analysis.video import (
    FrameInfo,
    compose_frame,
    percentile_scale,
    region_mass,
    screen_regions,
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


def test_stack_to_maps_sums_frames():
    sal = np.ones((2, 4, 3, 3), np.float32)
    np.testing.assert_array_equal(stack_to_maps(sal), np.full((2, 3, 3), 4.0))


def test_region_mass_on_pong_regions():
    regions = screen_regions("ALE/Pong-v5")
    maps = np.zeros((2, 84, 84))
    maps[:, :5, :] = 1.0  # all mass in the score bar rows (screen rows 0-12)
    mass = region_mass(maps, regions)
    assert mass["score_bar"]["mass"] == pytest.approx(1.0)
    assert mass["ball_field"]["mass"] == 0.0
    assert 0 < mass["ball_field"]["area"] < 1


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
