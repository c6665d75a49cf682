"""Saliency videos: Wang-style two panels or a Greydanus-style overlay, written as mp4 (H.264) or GIF.

- Panels (Wang et al. 2016, Fig. 2): value | advantage; the grey frame goes in the green and blue
  channels, the saliency map in red.
- Overlay (Greydanus et al. 2018): the full-colour frame, dimmed, with the value saliency added in
  red and the advantage saliency in blue.

Saliency is computed on the agent's ``[4, 84, 84]`` input and turned into one ``84 x 84`` map per
step by :func:`stack_to_maps` (:class:`MapOptions`: the newest frame or the whole stack, absolute or
signed, a Gaussian blur over space) and :func:`smooth_over_time` (a moving average over consecutive
video frames), then resized (bilinear) onto the ``210 x 160`` colour frame (the preprocessing
resized the whole screen, no crop).

Game speed: one video frame per agent step, and an agent step is 4 emulator frames (ALE frame skip
4 at 60 Hz), so a video plays at game speed at :data:`GAME_FPS` = 15 frames/s.
The colour scale is fixed for a whole video: each stream is divided by a high percentile of its
values over all frames (:func:`percentile_scale`), so brightness is comparable from frame to frame.
Frame counter, return and value estimate are drawn on screen with Pillow's built-in font.

TensorBoard's ``add_video`` needs moviepy 1.x and silently logs nothing with moviepy 2, so videos go
to files and stills to TensorBoard through ``add_image`` (:func:`analysis.figures.log_image`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from heed.analysis.saliency import AnalysisError

SCREEN_HW = (210, 160)
VIDEO_SUFFIXES = (".mp4", ".gif")
GAME_FPS = 15
"""Agent steps per second of play: ALE runs at 60 Hz and an agent step is 4 frames (frame skip 4)."""
MP4_CRF = 23
"""x264 constant rate factor of the mp4s (its default: visually clean, about 1/3 the size of quality=7)."""


@dataclass(frozen=True)
class MapOptions:
    """How an attribution of stacked frames becomes one map per step (the choices that matter on Atari)."""

    frames: Literal["newest", "stack"] = "newest"
    """newest: the attribution of the latest of the stacked frames (what is on screen now);
    stack: summed over all stacked frames (also the motion cues, smeared along the ball's path)"""
    absolute: bool = True
    """magnitude |attribution| (default), or signed (panels then show positive red, negative blue)"""
    space_sigma: float = 0.0
    """std of a Gaussian blur over space, in input pixels (0: none)"""
    time_window: int = 1
    """moving average over this many consecutive video frames, centred (1: none)"""


def stack_to_maps(saliency: torch.Tensor | np.ndarray, options: MapOptions | None = None) -> np.ndarray:
    """``[N, C, H, W]`` attribution (C stacked frames, newest last) -> ``[N, H, W]`` float32 maps.

    Default (``options=None``): the magnitude summed over the C frames. Otherwise ``options``
    choose the newest frame or the sum, the magnitude or the sign, and the spatial blur (applied
    after the magnitude, so positive and negative evidence do not cancel).
    """
    opts = options or MapOptions(frames="stack")
    arr = saliency.detach().float().cpu().numpy() if torch.is_tensor(saliency) else np.asarray(saliency, np.float32)
    if arr.ndim == 4:
        arr = arr[:, -1] if opts.frames == "newest" else (np.abs(arr) if opts.absolute else arr).sum(axis=1)
    if arr.ndim != 3:
        raise AnalysisError(f"saliency maps must be [N, C, H, W] or [N, H, W], got {arr.shape}")
    arr = np.abs(arr) if opts.absolute else arr
    if opts.space_sigma > 0:
        from heed.analysis.perturbation import gaussian_blur

        arr = gaussian_blur(torch.from_numpy(np.ascontiguousarray(arr, np.float32))[:, None], opts.space_sigma)[:, 0].numpy()
    return arr.astype(np.float32)


def smooth_over_time(maps: np.ndarray, window: int = 1) -> np.ndarray:
    """Centred moving average of ``maps [N, H, W]`` over ``window`` consecutive frames (shorter at the ends)."""
    if window < 1:
        raise AnalysisError(f"time window must be >= 1 frame, got {window}")
    maps = np.asarray(maps, np.float32)
    if window == 1 or len(maps) < 2:
        return maps
    csum = np.concatenate([np.zeros_like(maps[:1]), np.cumsum(maps, axis=0, dtype=np.float64)])
    lo = np.clip(np.arange(len(maps)) - window // 2, 0, len(maps))
    hi = np.clip(lo + window, 0, len(maps))
    lo = np.clip(hi - window, 0, len(maps))
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None, None]).astype(np.float32)


def percentile_scale(maps: np.ndarray, percentile: float = 99.5) -> float:
    """The ``percentile`` of all ``|values|`` of ``maps`` (a whole video): the value drawn at full brightness."""
    if not 0 < percentile <= 100:
        raise AnalysisError(f"percentile must be in (0, 100], got {percentile}")
    vals = np.abs(np.asarray(maps, np.float32)).ravel()
    scale = float(np.percentile(vals, percentile)) if vals.size else 0.0
    if scale <= 0:
        scale = float(vals.max()) if vals.size and vals.max() > 0 else 1.0
    return scale


def upsample(map_hw: np.ndarray, size: tuple[int, int] = SCREEN_HW) -> np.ndarray:
    """Resize one ``[h, w]`` map to ``size = (H, W)`` (bilinear)."""
    import cv2

    return cv2.resize(np.asarray(map_hw, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance in [0, 1] of a ``[H, W, 3]`` uint8 frame."""
    return (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0


def wang_panel(rgb: np.ndarray, sal: np.ndarray) -> np.ndarray:
    """Grey frame in green and blue, saliency ``sal [H, W]`` (in [0, 1]) in red. ``[H, W, 3]`` uint8.

    A signed map (in [-1, 1]) shows its negative part in blue: ``B = max(grey, -sal)``.
    """
    g = _grey(rgb)
    out = np.stack([np.clip(sal, 0, 1), g, np.maximum(g, np.clip(-sal, 0, 1))], axis=-1)
    return (out * 255).astype(np.uint8)


def greydanus_overlay(
    rgb: np.ndarray, red: np.ndarray, blue: np.ndarray, dim: float = 0.6, gamma: float = 2.0
) -> np.ndarray:
    """The colour frame at ``dim`` brightness, ``red**gamma`` added to R and ``blue**gamma`` to B.

    Maps in [0, 1]; ``gamma > 1`` keeps weak, diffuse saliency from washing the frame out. ``[H, W, 3]`` uint8.
    """
    out = rgb.astype(np.float32) / 255.0 * dim
    out[..., 0] += np.clip(np.abs(red), 0, 1) ** gamma  # a signed map shows its magnitude here
    out[..., 2] += np.clip(np.abs(blue), 0, 1) ** gamma
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def draw_text(image: np.ndarray, items: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """Draw ``(x, y, text)`` items in white on a copy of ``image`` with Pillow's built-in font."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(image)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    for x, y, text in items:
        draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)


@dataclass(frozen=True)
class FrameInfo:
    """What is written on a frame."""

    step: int
    episode_return: float
    value: float | None = None
    action: str | None = None


def compose_frame(
    rgb: np.ndarray,
    sal_value: np.ndarray,
    sal_advantage: np.ndarray,
    scales: tuple[float, float],
    info: FrameInfo,
    mode: str = "panels",
    zoom: int = 2,
    method: str = "gradient",
) -> np.ndarray:
    """One video frame from a ``[210, 160, 3]`` colour frame and two ``[84, 84]`` saliency maps.

    ``scales = (value, advantage)`` divide the maps (see :func:`percentile_scale`). ``panels``: two
    Wang panels side by side; ``overlay``: one Greydanus frame. Enlarged ``zoom`` times (nearest),
    with a text bar on top naming ``method``.
    """
    if mode not in ("panels", "overlay"):
        raise AnalysisError(f"mode must be 'panels' or 'overlay', got '{mode}'")
    hw = rgb.shape[:2]
    v = upsample(sal_value, hw) / scales[0]
    a = upsample(sal_advantage, hw) / scales[1]
    head = f"t={info.step}  return={info.episode_return:+g}"
    if info.value is not None:
        head += f"  V={info.value:+.2f}"
    act = f"  a*={info.action}" if info.action else ""
    gap = 4
    if mode == "panels":
        body = np.concatenate([wang_panel(rgb, v), np.zeros((hw[0], gap, 3), np.uint8), wang_panel(rgb, a)], axis=1)
        x2 = (hw[1] + gap) * zoom + 4
        names = (f"value V ({method})", f"advantage A(s,a*){act}") if zoom > 1 else ("value", "advantage")
        titles = [(4, 2, head), (4, 17, names[0]), (x2, 17, names[1])]
    else:
        body = greydanus_overlay(rgb, v, a)
        titles = [(4, 2, head), (4, 17, f"{method}: red V, blue A{act}")]
    body = body.repeat(zoom, axis=0).repeat(zoom, axis=1)
    bar = np.zeros((34, body.shape[1], 3), np.uint8)
    return draw_text(np.concatenate([bar, body], axis=0), titles)


def _pad16(frame: np.ndarray) -> np.ndarray:
    """Pad with black to multiples of 16 (H.264 macroblocks) so the encoder does not rescale."""
    h, w = frame.shape[:2]
    ph, pw = (-h) % 16, (-w) % 16
    return np.pad(frame, ((0, ph), (0, pw), (0, 0))) if ph or pw else frame


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = GAME_FPS, crf: int = MP4_CRF
) -> Path:
    """Write ``[H, W, 3]`` uint8 frames to ``path``: ``.mp4`` (H.264, yuv420p, x264 ``-crf crf``) or ``.gif``.

    heed's one video writer: saliency videos, memory contents, glimpse paths and policy recordings all
    go through it. mp4 frames are padded with black to multiples of 16; a GIF shows each frame for
    ``1000 / fps`` ms. ``fps`` (> 0, fractions allowed) defaults to game speed (:data:`GAME_FPS`).
    ``frames`` may be a ``[T, H, W, 3]`` array or any iterable of frames. Returns the path.
    """
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise AnalysisError(f"video path must end in {' or '.join(VIDEO_SUFFIXES)}, got '{path.name}'")
    if not fps > 0:
        raise AnalysisError(f"fps must be positive, got {fps}")
    if not 0 <= crf <= 51:
        raise AnalysisError(f"crf must be in [0, 51] (x264), got {crf}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        writer = imageio.get_writer(
            path, fps=fps, codec="libx264", pixelformat="yuv420p", quality=None, macro_block_size=16,
            ffmpeg_log_level="error", output_params=["-crf", str(crf), "-preset", "medium"],
        )
        prep = _pad16
    else:
        writer = imageio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0)
        prep = np.asarray
    count = 0
    with writer:
        for frame in frames:
            writer.append_data(prep(np.ascontiguousarray(frame, dtype=np.uint8)))
            count += 1
    if count == 0:
        path.unlink(missing_ok=True)
        raise AnalysisError("no frames to write")
    return path


__all__ = [
    "GAME_FPS",
    "MP4_CRF",
    "FrameInfo",
    "MapOptions",
    "compose_frame",
    "greydanus_overlay",
    "percentile_scale",
    "smooth_over_time",
    "stack_to_maps",
    "upsample",
    "wang_panel",
    "write_video",
]
