"""Where the objects are, and how much of a saliency map falls on them (Pong, Breakout, Enduro).

Objects are found from the colours of the 210x160 ALE frame (the frame ``env.render()`` returns
after an agent step), then mapped onto the agent's 84x84 input the way the DeepMind preprocessing
maps the screen (the whole screen resized, no crop): a cell belongs to an object when any of the
screen pixels it averages does, then the mask is dilated by ``margin`` cells (the observation is
the max of the last two emulator frames and the network's first layer has an 8x8 receptive field,
so a map that is one cell off an object is still on it).

For a non-negative map ``S [84, 84]`` and an object mask ``O``:

- mass share ``m = sum_O S / sum S``; area share ``a = |O| / (84 * 84)``;
- focus ``= mean_frames(m) / mean_frames(a)`` over the frames where the object is on screen:
  1.0 is what a map spread uniformly (chance) gets, 4.0 puts four times its area's share on it;
- peak on object: whether ``argmax S`` lies on any object (rate over the frames where the game's
  ``in_play`` object, e.g. the ball, is on screen).

Objects are where they are on screen now (the newest frame); :func:`focus_summary`'s ``history``
can widen each mask to the union over the last steps, which the agent's 4-frame input also shows.

Colours are those of the default game mode in daylight (Enduro's night and fog change them; the
masks then find fewer cars and the summary says how many frames each object was found in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from heed.analysis.saliency import AnalysisError

INPUT_HW = (84, 84)
Masks = dict[str, np.ndarray]  # object name -> bool [H, W]


def _colour(rgb: np.ndarray, colour: Sequence[int], rows: tuple[int, int] = (0, 210)) -> np.ndarray:
    """Screen pixels of exactly ``colour`` within ``rows = (first, last + 1)``: bool ``[210, 160]``."""
    hit = (rgb == np.asarray(colour, np.uint8)).all(axis=-1)
    hit[: rows[0]] = False
    hit[rows[1] :] = False
    return hit


def pong_objects(rgb: np.ndarray) -> Masks:
    """Pong: the ball (white) and both paddles inside the field (rows 34-193, below the score)."""
    field = (34, 194)
    return {
        "ball": _colour(rgb, (236, 236, 236), field),
        "agent_paddle": _colour(rgb, (92, 186, 92), field),  # right, green
        "opponent_paddle": _colour(rgb, (213, 130, 74), field),  # left, orange
    }


def breakout_objects(rgb: np.ndarray) -> Masks:
    """Breakout: the bricks (rows 57-92, any colour), the paddle (rows 189-193) and the ball (red, between).

    Columns 8-151 only: the side walls (grey, with coloured marks at the paddle's height) are outside.
    """
    red = (200, 72, 72)
    bricks = rgb.any(axis=-1) & ~(rgb == 142).all(axis=-1)  # not black, not the grey walls
    bricks[:57] = False
    bricks[93:] = False
    masks = {"bricks": bricks, "paddle": _colour(rgb, red, (189, 194)), "ball": _colour(rgb, red, (93, 189))}
    for m in masks.values():
        m[:, :8] = False
        m[:, 152:] = False
    return masks


def enduro_objects(rgb: np.ndarray) -> Masks:
    """Enduro: the player's car, the other cars, and the horizon band where new cars appear.

    Road area rows 51-154 (below the mountains). The player's car is the grey (``r = g = b``) pixels
    of rows 139-154 between each row's outermost grey pixels (those are the road's edges); other cars
    are the coloured pixels of the road area (not grass, not grey, not black); the horizon band is
    rows 45-65 across the playfield (mountains and the far road).
    """
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2]) & (rgb[..., 0] > 0)
    player = np.zeros(rgb.shape[:2], bool)
    for r in range(139, 155):
        cols = np.flatnonzero(grey[r, 8:]) + 8
        if len(cols) > 2:
            player[r, cols[1:-1]] = True
    grass = (rgb == np.asarray((0, 68, 0), np.uint8)).all(axis=-1)
    cars = ~grass & ~grey & rgb.any(axis=-1)
    cars[:51] = False
    cars[155:] = False
    cars[:, :8] = False
    horizon = np.zeros(rgb.shape[:2], bool)
    horizon[45:66, 8:] = True
    return {"player_car": player, "other_cars": cars & ~player, "horizon_band": horizon}


@dataclass(frozen=True)
class GameObjects:
    """How to find a game's objects, which of them the agent must watch, and when play is on."""

    find: Callable[[np.ndarray], Masks]
    key: tuple[str, ...]
    """objects whose union gives the headline focus (e.g. Pong's ball and agent paddle)"""
    in_play: str | None
    """peak-on-object rates count the frames where this object is on screen (None: every frame)"""


GAME_OBJECTS: dict[str, GameObjects] = {
    "pong": GameObjects(pong_objects, ("ball", "agent_paddle"), "ball"),
    "breakout": GameObjects(breakout_objects, ("ball", "paddle"), "ball"),
    "enduro": GameObjects(enduro_objects, ("player_car", "other_cars"), None),
}
"""Games with an object-focus measure, by lower-case game name (``ALE/Pong-v5`` -> ``pong``)."""


def game_objects(env_id: str) -> GameObjects | None:
    """The :data:`GAME_OBJECTS` entry for ``env_id`` (``ALE/Pong-v5``, ``PongNoFrameskip-v4``, ``pong``), or None."""
    name = env_id.split("/")[-1].split("-")[0].lower().removesuffix("noframeskip").removesuffix("deterministic")
    return GAME_OBJECTS.get(name)


def to_input_grid(mask: np.ndarray, size: tuple[int, int] = INPUT_HW, margin: int = 1) -> np.ndarray:
    """A screen mask ``[210, 160]`` -> ``size`` cells (any covered pixel counts), dilated ``margin`` cells."""
    import cv2

    small = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA) > 0
    if margin > 0 and small.any():
        kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
        small = cv2.dilate(small.astype(np.uint8), kernel) > 0
    return small


def object_masks(rgb: np.ndarray, env_id: str, size: tuple[int, int] = INPUT_HW, margin: int = 1) -> Masks:
    """The game's objects in one ``[210, 160, 3]`` frame as bool masks on the ``size`` input grid."""
    spec = game_objects(env_id)
    if spec is None:
        raise AnalysisError(f"no object masks for '{env_id}'; games with masks: {', '.join(GAME_OBJECTS)}")
    return {name: to_input_grid(m, size, margin) for name, m in spec.find(np.asarray(rgb)).items()}


def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the Pearson correlation of two map stacks ``[N, H, W]`` (flat maps count 0)."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return float(np.mean(np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), 0.0)))


def focus_scores(maps: np.ndarray, masks: Sequence[Masks], key: Sequence[str] = (), in_play: str | None = None) -> dict:
    """Object focus of a map stack ``maps [N, H, W]`` (non-negative) given per-frame ``masks``.

    Returns ``{"objects": {name: {"mass", "area", "focus", "frames"}}, "key": {...}, "peak_on_object",
    "peak_on_key", "peak_frames"}``: mass and area are mean shares over the frames where the object
    is on screen (``frames`` of them), focus their ratio (1.0 = chance); ``key`` is the same for the
    union of the ``key`` objects; the peak rates count the frames where ``in_play`` is on screen.
    """
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3 or len(masks) != len(maps):
        raise AnalysisError(f"need maps [N, H, W] and N mask sets, got {maps.shape} and {len(masks)}")
    if (maps < 0).any():
        raise AnalysisError("focus needs non-negative maps (take the absolute value first)")
    n, h, w = maps.shape
    totals = maps.sum(axis=(1, 2))
    flat_peak = maps.reshape(n, -1).argmax(1)
    names = list(masks[0]) if n else []

    def stats(select: Callable[[Masks], np.ndarray]) -> dict:
        mass, area = [], []
        for i in range(n):
            m = select(masks[i])
            if m.any() and totals[i] > 0:
                mass.append(maps[i][m].sum() / totals[i])
                area.append(m.mean())
        if not mass:
            return {"mass": 0.0, "area": 0.0, "focus": None, "frames": 0}
        return {"mass": float(np.mean(mass)), "area": float(np.mean(area)),
                "focus": float(np.mean(mass) / np.mean(area)), "frames": len(mass)}

    def union(m: Masks, which: Sequence[str]) -> np.ndarray:
        return np.logical_or.reduce([m[k] for k in which]) if which else np.zeros((h, w), bool)

    frames = [i for i in range(n) if in_play is None or masks[i][in_play].any()]
    def peak_rate(which: Sequence[str]) -> float | None:
        if not frames:
            return None
        return float(np.mean([union(masks[i], which).reshape(-1)[flat_peak[i]] for i in frames]))

    return {
        "objects": {k: stats(lambda m, k=k: m[k]) for k in names},
        "key": {"objects": list(key), **stats(lambda m: union(m, key))},
        "peak_on_object": peak_rate(names),
        "peak_on_key": peak_rate(key),
        "peak_frames": len(frames),
    }


def stack_history(masks: Sequence[Masks], history: int) -> list[Masks]:
    """Per step, each object's union over the last ``history`` steps' masks (what a frame stack shows)."""
    if history < 1:
        raise AnalysisError(f"history must be >= 1 frame, got {history}")
    return [{k: np.logical_or.reduce([masks[j][k] for j in range(max(0, i - history + 1), i + 1)]) for k in m}
            for i, m in enumerate(masks)]


def focus_summary(
    env_id: str, frames: Sequence[np.ndarray], maps: dict[str, np.ndarray], margin: int = 1, history: int = 1
) -> dict | None:
    """Object focus of each named map stack (e.g. ``{"value": [N, 84, 84], "advantage": ...}``) on ``frames``.

    ``frames``: the ``[210, 160, 3]`` colour frames of consecutive steps that the maps explain.
    An object's mask at step ``t`` is where it is on screen now (``history=1``, the default), or
    its union over steps ``t - history + 1 .. t`` (``history=4``: everything the 4-frame input
    stack shows, e.g. the ball's recent path). Adds ``value_advantage_correlation`` when both
    maps are given. None for a game without masks (see :data:`GAME_OBJECTS`).
    """
    spec = game_objects(env_id)
    if spec is None or not len(frames):
        return None
    size = next(iter(maps.values())).shape[1:]
    masks = stack_history([object_masks(f, env_id, size, margin) for f in frames], history)
    out: dict = {"margin_cells": margin, "history_frames": history, "key_objects": list(spec.key), "in_play": spec.in_play}
    for name, stack in maps.items():
        out[name] = focus_scores(stack, masks, spec.key, spec.in_play)
    if "value" in maps and "advantage" in maps:
        out["value_advantage_correlation"] = map_correlation(maps["value"], maps["advantage"])
    return out


__all__ = [
    "GAME_OBJECTS",
    "GameObjects",
    "breakout_objects",
    "enduro_objects",
    "focus_scores",
    "focus_summary",
    "game_objects",
    "map_correlation",
    "object_masks",
    "pong_objects",
    "stack_history",
    "to_input_grid",
]
