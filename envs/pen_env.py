"""Online handwriting recognition as a Gymnasium env, and the CTC helpers it scores with.

- :func:`ctc_collapse` turns a CTC path (one label or blank per step) into its labelling: merge
  repeated labels, then drop the blanks (``aa-ab-`` -> ``aab``).
- :func:`edit_distance` is the Levenshtein distance (insertions, deletions, substitutions, each 1);
  the character error rate is ``sum edit_distance / sum len(truth)`` over a test set, the word error
  rate the same over words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from heed.envs.errors import require
from heed.envs.handwriting import (
    ALPHABET,
    TEST_WRITERS,
    TRAIN_WRITERS,
    PenSample,
    decode_labels,
    sample_text,
    write,
    writer_style,
)

BLANK = 0
#: pen offsets are clipped to this many x-heights in the observation (a jump between words is < 5)
OBS_LIMIT = 20.0


def ctc_collapse(path: Sequence[int] | np.ndarray, blank: int = BLANK) -> list[int]:
    """The labelling of a CTC path ``[T]``: repeated labels merged, then blanks removed."""
    out: list[int] = []
    previous = None
    for label in np.asarray(path, np.int64).tolist():
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (strings, label lists or word lists): O(len a * len b)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


class PenRecognitionEnv(gym.Env):
    """Read a handwritten line, one pen point per step (CTC style).

    ## Description
    An episode is one line of :mod:`heed.envs.handwriting` pen data: 1 to 3 words written by a writer
    drawn from the split's writers (``train``: :data:`TRAIN_WRITERS` and the training words; ``test``:
    the held-out writers and words). At each step the agent sees one pen point and emits a label or
    the blank, as a CTC network does; the answer is the collapsed path (:func:`ctc_collapse`).

    ## Action Space
    ``Discrete(len(ALPHABET) + 1)``: 0 is the blank, ``k >= 1`` the character ``ALPHABET[k - 1]``.

    ## Observation Space
    ``Box(-20, 20, (3,), float32)``: the point's ``(dx, dy, eos)`` (offsets in x-heights; ``eos = 1`` on
    a stroke's last point); all zeros once the episode ended.

    ## Rewards
    0 on every step but the last; on the last, minus the edit distance between the collapsed path
    and the text (so the return is minus the line's character errors; a perfect reading scores 0).
    CTC needs the whole line before it can be scored, which is why the reward comes at the end.

    ## Episode End
    Terminates after the line's last point (``info["length"]``, known at reset); never truncates.

    ## Info
    ``text`` (the line), ``length`` (at reset); on the last step ``prediction`` (the decoded text).

    ## Arguments
    ``split``: ``"train"`` or ``"test"``; ``min_words``, ``max_words``: words per line;
    ``render_mode``: ``None`` or ``"ansi"``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 30}

    def __init__(self, split: str = "train", min_words: int = 1, max_words: int = 3,
                 render_mode: str | None = None) -> None:
        require(split in ("train", "test"), f"split must be 'train' or 'test', got '{split}'")
        require(render_mode in (None, "ansi"), f"unsupported render_mode '{render_mode}': use None or 'ansi'")
        sample_text(np.random.default_rng(0), min_words, max_words, split)  # checks the word counts
        self.split, self.min_words, self.max_words, self.render_mode = split, min_words, max_words, render_mode
        self.observation_space = spaces.Box(-OBS_LIMIT, OBS_LIMIT, (3,), np.float32)
        self.action_space = spaces.Discrete(len(ALPHABET) + 1)
        self._sample: PenSample | None = None
        self._actions: list[int] = []

    def _obs(self) -> np.ndarray:
        t = len(self._actions)
        if t >= len(self._sample.points):
            return np.zeros(3, np.float32)
        return np.clip(self._sample.points[t], -OBS_LIMIT, OBS_LIMIT).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        writers = TRAIN_WRITERS if self.split == "train" else TEST_WRITERS
        style = writer_style(int(rng.integers(writers.start, writers.stop)))
        text = sample_text(rng, self.min_words, self.max_words, self.split)
        self._sample = write(text, style, rng)
        self._actions = []
        return self._obs(), {"text": text, "length": len(self._sample.points)}

    def step(self, action: Any):
        if self._sample is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if len(self._actions) >= len(self._sample.points):
            raise gym.error.ResetNeeded("the episode has ended: call reset()")
        self._actions.append(int(action))
        terminated = len(self._actions) == len(self._sample.points)
        reward, info = 0.0, {}
        if terminated:
            prediction = decode_labels(ctc_collapse(self._actions))
            reward = -float(edit_distance(prediction, self._sample.text))
            info["prediction"] = prediction
        return self._obs(), reward, terminated, False, info

    def render(self) -> str | None:
        """``ansi``: the text, the step and the labelling emitted so far."""
        if self.render_mode != "ansi" or self._sample is None:
            return None
        so_far = decode_labels(ctc_collapse(self._actions))
        return f"'{self._sample.text}' step {len(self._actions)}/{len(self._sample.points)}: '{so_far}'"
