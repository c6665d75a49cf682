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

Colours are those of the default game mode; Enduro's masks hold through its day, snow, dusk, night
and fog (its background colour is found per frame), and the summary says how many frames each
object was found in.

The lecture's claim (Wang et al. 2016, Fig. 2: on Enduro the value stream watches the horizon,
where new cars appear, and the advantage stream the car just ahead when a collision looms) is
measured by a :class:`FrameSplit`: the frames are split by :func:`enduro_car_near` and each map's
focus on the horizon band and on the car just ahead is reported per part (:func:`split_scores`).
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


ENDURO_ROAD_ROWS = (51, 155)
"""Screen rows ``(first, last + 1)`` of Enduro's road area, below the mountains, above the dashboard."""
ENDURO_PLAYER_ROWS = (139, 155)
"""Screen rows of the player's car (it moves only sideways)."""
ENDURO_NEAR_ROWS = 30
"""A car is *near* when its lowest screen row is at most this many rows above the top of the player's
car (or level with it): the lower ~40 % of the 77 rows between where cars appear (row ~64) and the
player's car (row ~141), about one and a half car lengths on screen."""
_ENDURO_PLAYER_GREY = (192, 192, 192)


def _background(rgb: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
    """The most common colour of ``rows`` (playfield columns 8-159): Enduro's grass, snow, night or fog."""
    pixels = rgb[rows[0] : rows[1], 8:].reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return colours[counts.argmax()]


def _components(mask: np.ndarray, join: tuple[int, int] = (1, 1)) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of ``mask`` after joining pixels ``join = (rows, cols)`` apart:
    ``(count incl. background 0, labels [H, W] (0 off the mask), stats [count, 5])`` as OpenCV gives them."""
    import cv2

    grown = mask.astype(np.uint8)
    if join != (1, 1):
        grown = cv2.dilate(grown, np.ones(join, np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    return n, np.where(mask, labels, 0), stats


def enduro_objects(rgb: np.ndarray) -> Masks:
    """Enduro: the player's car, the other cars, the car just ahead and the horizon band.

    Works in every phase of the day (grass, snow, dusk, night, fog), since the background is taken
    per frame as the most common colour of the road area (rows 51-154, :data:`ENDURO_ROAD_ROWS`):

    - ``player_car``: the largest 8-connected blob (>= 48 pixels) of the car's grey (192, 192, 192)
      in rows 139-154 (the road's edges share the grey but are thin lines);
    - ``other_cars``: coloured pixels of the road area (not the background, not grey: the road's
      edges, fog and snow are grey); at night only their tail lights show;
    - ``car_ahead``: the other car nearest to the player (the one reaching lowest on screen; parts
      up to 2 rows and 8 columns apart are one car, e.g. two tail lights);
    - ``horizon_band``: rows 45-65 across the playfield (the mountains and the far road, where
      new cars appear).
    """
    road = ENDURO_ROAD_ROWS
    background = _background(rgb, road)
    h, w = rgb.shape[:2]
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    player = np.zeros((h, w), bool)
    band = _colour(rgb, _ENDURO_PLAYER_GREY, ENDURO_PLAYER_ROWS)
    band[:, :8] = False
    n, labels, stats = _components(band)
    if n > 1:
        biggest = 1 + int(stats[1:, 4].argmax())
        if stats[biggest, 4] >= 48:
            player = labels == biggest
    cars = ~grey & (rgb != background).any(axis=-1)
    cars[: road[0]] = False
    cars[road[1] :] = False
    cars[:, :8] = False
    cars &= ~player
    ahead = np.zeros((h, w), bool)
    if cars.any():
        n, labels, _ = _components(cars, join=(3, 9))
        lowest = np.flatnonzero(cars.any(axis=1))[-1]
        ahead = np.isin(labels, np.unique(labels[lowest][cars[lowest]]))
    horizon = np.zeros((h, w), bool)
    horizon[45:66, 8:] = True
    return {"player_car": player, "other_cars": cars, "car_ahead": ahead, "horizon_band": horizon}


def enduro_car_near(screen: Masks, near_rows: int = ENDURO_NEAR_ROWS) -> bool:
    """Whether the car just ahead reaches within ``near_rows`` screen rows of the top of the player's car.

    ``screen``: :func:`enduro_objects` of one frame (screen resolution). Level with or beside the
    player counts as near (a collision from the side); no car on the road is not near. The player's
    top is row 141 when its car is not found (e.g. while it spins after a crash).
    """
    rows = np.flatnonzero(screen["car_ahead"].any(axis=1))
    if not len(rows):
        return False
    player_rows = np.flatnonzero(screen["player_car"].any(axis=1))
    top = int(player_rows[0]) if len(player_rows) else ENDURO_PLAYER_ROWS[0] + 2
    return bool(rows[-1] >= top - near_rows)


@dataclass(frozen=True)
class FrameSplit:
    """A yes/no condition on one frame's screen objects that splits a video's frames in two, and the
    objects whose focus is reported in each part (e.g. Enduro: is a car near; horizon and car ahead)."""

    name: str
    test: Callable[[Masks], bool]
    objects: tuple[str, ...]
    definition: str


@dataclass(frozen=True)
class GameObjects:
    """How to find a game's objects, which of them the agent must watch, and when play is on."""

    find: Callable[[np.ndarray], Masks]
    key: tuple[str, ...]
    """objects whose union gives the headline focus (e.g. Pong's ball and agent paddle)"""
    in_play: str | None
    """peak-on-object rates count the frames where this object is on screen (None: every frame)"""
    split: FrameSplit | None = None
    """frames split in two by a condition, with focus per part (Enduro: the lecture's claim)"""


GAME_OBJECTS: dict[str, GameObjects] = {
    "pong": GameObjects(pong_objects, ("ball", "agent_paddle"), "ball"),
    "breakout": GameObjects(breakout_objects, ("ball", "paddle"), "ball"),
    "enduro": GameObjects(
        enduro_objects, ("player_car", "other_cars"), None,
        FrameSplit("car_near", enduro_car_near, ("horizon_band", "car_ahead"),
                   f"the car just ahead reaches within {ENDURO_NEAR_ROWS} screen rows of the top of the player's car"),
    ),
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


def split_scores(maps: dict[str, np.ndarray], masks: Sequence[Masks], flags: Sequence[bool], split: FrameSplit) -> dict:
    """Focus of each map stack on ``split.objects`` in the frames where ``flags`` holds ("yes") and the rest ("no").

    ``maps``: name -> ``[N, H, W]`` non-negative; ``masks``: N grid mask sets; ``flags``: N booleans.
    Returns ``{"by", "definition", "objects", "parts": {"yes" | "no": {"frames": n, <map name>:
    {object: {"mass", "area", "focus", "frames"}}}}}`` (as :func:`focus_scores`' ``objects``).
    """
    flags = np.asarray(flags, bool)
    if len(flags) != len(masks):
        raise AnalysisError(f"need one flag per frame, got {len(flags)} flags for {len(masks)} frames")
    empty = {"mass": 0.0, "area": 0.0, "focus": None, "frames": 0}
    parts = {}
    for part, chosen in (("yes", flags), ("no", ~flags)):
        idx = np.flatnonzero(chosen)
        sub = [{k: masks[i][k] for k in split.objects} for i in idx]
        scores = {
            name: focus_scores(np.asarray(stack)[idx], sub)["objects"] if len(idx) else {k: dict(empty) for k in split.objects}
            for name, stack in maps.items()
        }
        parts[part] = {"frames": int(len(idx)), **scores}
    return {"by": split.name, "definition": split.definition, "objects": list(split.objects), "parts": parts}


def format_split(split: dict, maps: Sequence[str] = ("value", "advantage")) -> str:
    """:func:`split_scores`' output as a text table: per part and map, each object's mass share and focus."""

    def cell(stats: dict) -> str:
        return "-" if stats["focus"] is None else f"{stats['mass']:.3f} ({stats['focus']:.2f}x)"

    objects, by = split["objects"], split["by"]
    heads = [f"{'adv.' if m == 'advantage' else m} on {o}" for o in objects for m in maps]
    widths = [max(len(h), 15) for h in heads]
    lines = [f"mass share on each object (focus = share / area share) by {by}: {split['definition']}",
             f"{'frames':<14}{'n':>6}  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    for part in ("yes", "no"):
        stats = split["parts"][part]
        cells = [cell(stats[m][o]) for o in objects for m in maps]
        lines.append(f"{by + ': ' + part:<14}{stats['frames']:>6}  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths)))
        found = ", ".join(f"{o} {stats[maps[0]][o]['frames']}" for o in objects)
        lines.append(f"{'':<14}{'':>6}  (frames with the object: {found})")
    return "\n".join(lines)


def focus_summary(
    env_id: str, frames: Sequence[np.ndarray], maps: dict[str, np.ndarray], margin: int = 1, history: int = 1
) -> dict | None:
    """Object focus of each named map stack (e.g. ``{"value": [N, 84, 84], "advantage": ...}``) on ``frames``.

    ``frames``: the ``[210, 160, 3]`` colour frames of consecutive steps that the maps explain.
    An object's mask at step ``t`` is where it is on screen now (``history=1``, the default), or
    its union over steps ``t - history + 1 .. t`` (``history=4``: everything the 4-frame input
    stack shows, e.g. the ball's recent path). Adds ``value_advantage_correlation`` when both
    maps are given, and ``split`` (:func:`split_scores`) for a game with a :class:`FrameSplit`
    (Enduro: is a car near). None for a game without masks (see :data:`GAME_OBJECTS`).
    """
    spec = game_objects(env_id)
    if spec is None or not len(frames):
        return None
    size = next(iter(maps.values())).shape[1:]
    screens = [spec.find(np.asarray(f)) for f in frames]
    masks = stack_history([{k: to_input_grid(m, size, margin) for k, m in s.items()} for s in screens], history)
    out: dict = {"margin_cells": margin, "history_frames": history, "key_objects": list(spec.key), "in_play": spec.in_play}
    for name, stack in maps.items():
        out[name] = focus_scores(stack, masks, spec.key, spec.in_play)
    if "value" in maps and "advantage" in maps:
        out["value_advantage_correlation"] = map_correlation(maps["value"], maps["advantage"])
    if spec.split is not None:
        out["split"] = split_scores(maps, masks, [spec.split.test(s) for s in screens], spec.split)
    return out


__all__ = [
    "ENDURO_NEAR_ROWS",
    "GAME_OBJECTS",
    "FrameSplit",
    "GameObjects",
    "breakout_objects",
    "enduro_car_near",
    "enduro_objects",
    "focus_scores",
    "focus_summary",
    "format_split",
    "game_objects",
    "map_correlation",
    "object_masks",
    "pong_objects",
    "split_scores",
    "stack_history",
    "to_input_grid",
]
