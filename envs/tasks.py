"""The one table of supervised sequence tasks: ``TASKS[name](**options)`` builds a task.

Every entry follows :class:`heed.envs.sequence.SequenceTask` (shapes in :mod:`heed.envs.sequence`) and
also becomes a Gymnasium id (its ``env_id``, stepped by :class:`heed.envs.sequence_env.SequenceTaskEnv`;
see :mod:`heed.envs.registration`). ``scripts/train.py supervised --task NAME`` looks names up here.

A new task is its file (a class with ``name``, ``env_id``, ``input_size``, ``output_size``, ``loss`` and
``sample``) plus one line below; the env contract tests then cover its id with no other edit.
"""

from __future__ import annotations

from collections.abc import Callable

from heed.envs.algorithmic import (
    AssociativeRecallTask,
    CopyTask,
    DynamicNGramsTask,
    PrioritySortTask,
    RepeatCopyTask,
)
from heed.envs.babi import BabiTask
from heed.envs.cloze import ClozeTask
from heed.envs.cue import CueRecallTask
from heed.envs.graphs import InferenceTask, ShortestPathTask, TraversalTask
from heed.envs.ponder import AdditionTask, LogicTask, ParityTask, ReverseTask, SeqCopyTask
from heed.envs.sequence import Batch, SequenceTask
from heed.envs.text import TextTask
from heed.envs.translation import DateTask, TranslationTask

TASKS: dict[str, Callable[..., SequenceTask]] = {
    # NTM tasks (Graves et al. 2014): envs/algorithmic.py
    "copy": CopyTask,
    "repeat-copy": RepeatCopyTask,
    "associative-recall": AssociativeRecallTask,
    "dynamic-ngrams": DynamicNGramsTask,
    "priority-sort": PrioritySortTask,
    # pondering tasks (ACT, Universal Transformer): envs/ponder.py, envs/babi.py
    "parity": ParityTask,
    "logic": LogicTask,
    "addition": AdditionTask,
    "seqcopy": SeqCopyTask,
    "reverse": ReverseTask,
    "babi": BabiTask,
    "cloze": ClozeTask,  # entity-anonymised cloze questions for the attentive reader: envs/cloze.py
    # the sequential-Jacobian demo's probe: envs/cue.py
    "cue-recall": CueRecallTask,
    # attention between sequences (Bahdanau et al. 2014): envs/translation.py
    "translation": TranslationTask,
    "dates": DateTask,
    # character language model on Python's own documentation: envs/text.py
    "text": TextTask,
    # the DNC's graph tasks (Graves et al. 2016) with their curricula: envs/graphs.py
    "graph-traversal": TraversalTask, "graph-shortest-path": ShortestPathTask, "graph-inference": InferenceTask,
}

__all__ = ["TASKS", "Batch", "SequenceTask"]
