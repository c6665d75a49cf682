"""The one Gymnasium wrapper for every supervised sequence task in :data:`heed.envs.tasks.TASKS`."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from heed.envs.errors import HeedError, require, suggest
from heed.envs.sequence import Batch, SequenceTask
from heed.envs.tasks import TASKS


class SequenceTaskEnv(gym.Env):
    """One episode = one sampled sequence of a :class:`heed.envs.sequence.SequenceTask`, step by step.

    ## Description
    At step t the observation is the task's input x_t and the action is the output for step t. Every
    entry of ``TASKS`` is registered this way (``heed/Copy-v0``, ``heed/Parity-v0``, ``heed/Babi-v0``,
    ``heed/CueRecall-v0``, ...; the table is in :mod:`heed.envs.registration`).

    ## Action Space
    By the task's ``loss``: ``MultiBinary(K)`` (``bits``: the K predicted bits), ``Discrete(K)``
    (``classes``: the predicted class), ``Box(-1, 1, (K,), float32)`` (``mse``: K values) or
    ``MultiDiscrete([10] * G)`` (``digits``, K = 10 G: the G predicted digits).

    ## Observation Space
    ``Box(-1, 1, (D,), float32)``: the input of the current step (all zeros once the episode ended).

    ## Rewards
    Minus the error of the step on scored steps (``mask = 1``), 0 elsewhere: the number of wrong
    bits (``bits``), 1 for a wrong class (``classes``), the squared error summed over the K values
    (``mse``), 1 when any digit is wrong (``digits``: the step's answer, e.g. a triple, is wrong). The return is minus the sequence's error, the supervised metric (bit errors per sequence
    for the NTM tasks); a perfect answer scores 0, so the reward is never positive.

    ## Episode End
    Terminates after the sequence's last step (``info["length"]`` steps, known at reset); never truncates.

    ## Info
    ``target`` (the label of the step the returned observation belongs to: float32 ``[K]`` or an int
    class) and ``scored`` (whether that step is scored): a supervised learner reads its labels there.
    ``reset`` adds ``length``.

    ## Arguments
    ``task_name``: a name in ``TASKS``; ``render_mode``: ``None`` or ``"ansi"`` (a line of text per
    step); every other keyword goes to the task (``gym.make("heed/Copy-v0", max_len=5)``,
    ``gym.make("heed/Babi-v0", task=2)``). ``reset(options={...})`` overrides task options from then on
    (the spaces must stay the same).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, task_name: str = "copy", render_mode: str | None = None, **options: Any) -> None:
        require(task_name in TASKS, f"unknown task '{task_name}'.{suggest(task_name, TASKS)}")
        require(
            render_mode in (None, *self.metadata["render_modes"]),
            f"unsupported render_mode '{render_mode}' for '{task_name}': use None or 'ansi'",
        )
        self.task_name, self.options, self.render_mode = task_name, dict(options), render_mode
        self.task: SequenceTask = TASKS[task_name](**options)
        self.observation_space = spaces.Box(-1.0, 1.0, (self.task.input_size,), np.float32)
        self.action_space = self._action_space(self.task)
        self._batch: Batch | None = None
        self._t = 0

    @staticmethod
    def _action_space(task: SequenceTask) -> spaces.Space:
        k = task.output_size
        if task.loss == "bits":
            return spaces.MultiBinary(k)
        if task.loss == "classes":
            return spaces.Discrete(k)
        if task.loss == "mse":
            return spaces.Box(-1.0, 1.0, (k,), np.float32)
        if task.loss == "digits":
            return spaces.MultiDiscrete(np.full(k // 10, 10, np.int64))
        raise HeedError(f"task '{task.name}' declares unknown loss '{task.loss}': use bits, classes, mse or digits")

    @property
    def _length(self) -> int:
        return int(self._batch.mask.shape[1])

    def _obs(self) -> np.ndarray:
        if self._t >= self._length:
            return np.zeros(self.observation_space.shape, np.float32)
        return self._batch.inputs[0, self._t].astype(np.float32)

    def _info(self) -> dict[str, Any]:
        if self._t >= self._length:  # no step left: a zero label, never scored
            target = 0 if self.task.loss == "classes" else np.zeros(self.task.output_size, np.float32)
            if self.task.loss == "digits":
                target = np.zeros(self.task.output_size // 10, np.int64)
            return {"target": target, "scored": False}
        target = self._batch.targets[0, self._t]
        if self.task.loss == "digits":
            return {"target": target.astype(np.int64), "scored": bool(self._batch.mask[0, self._t] > 0)}
        target = int(target) if self.task.loss == "classes" else target.astype(np.float32)
        return {"target": target, "scored": bool(self._batch.mask[0, self._t] > 0)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            task = TASKS[self.task_name](**{**self.options, **options})
            require(
                self._action_space(task) == self.action_space and task.input_size == self.task.input_size,
                f"reset options {options} change the spaces of '{self.task_name}': make a new env instead",
            )
            self.options.update(options)
            self.task = task
        self._batch = self.task.sample(1, self.np_random)
        self._t = 0
        return self._obs(), {**self._info(), "length": self._length}

    def step(self, action: Any):
        if self._batch is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._t >= self._length:
            raise gym.error.ResetNeeded("the episode has ended: call reset()")
        target, scored = self._batch.targets[0, self._t], float(self._batch.mask[0, self._t])
        if self.task.loss == "bits":
            error = float(np.sum(np.asarray(action).reshape(-1).astype(np.int64) != target.astype(np.int64)))
        elif self.task.loss == "classes":
            error = float(int(action) != int(target))
        elif self.task.loss == "digits":
            error = float(np.any(np.asarray(action).reshape(-1).astype(np.int64) != target))
        else:
            error = float(np.sum((np.asarray(action, np.float64).reshape(-1) - target) ** 2))
        self._t += 1
        reward = -scored * error if scored else 0.0
        terminated = self._t >= self._length
        return self._obs(), reward, terminated, False, self._info()

    def render(self) -> str | None:
        """``ansi``: the step, its non-zero inputs and its target."""
        if self.render_mode != "ansi" or self._batch is None:
            return None
        if self._t >= self._length:
            return f"{self.task_name}: episode over after {self._length} steps"
        units = np.flatnonzero(self._batch.inputs[0, self._t])
        info = self._info()
        target = np.round(info["target"], 3).tolist() if self.task.loss == "mse" else info["target"]
        if self.task.loss in ("bits", "digits"):
            target = "".join(str(int(b)) for b in info["target"])
        return (
            f"{self.task_name} t={self._t}/{self._length} inputs on {units.tolist()} "
            f"target {target}{' (scored)' if info['scored'] else ''}"
        )
