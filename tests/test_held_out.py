"""The supervised trainer measures on a task's held-out data where the task has some."""

from __future__ import annotations

import numpy as np

from heed.envs.sequence import held_out_task
from heed.envs.tasks import TASKS
from heed.envs.text import VOCAB, TextTask, corpus_text
from heed.envs.translation import TranslationTask


def test_text_and_translation_are_measured_on_their_held_out_split():
    text = held_out_task(TextTask(window=50))
    assert text.split == "validation" and text.window == 50
    # every window of the held-out task is a piece of the validation text, none of the training text
    batch = text.sample(4, np.random.default_rng(0))
    vocab = np.array(list(VOCAB))
    validation, train = corpus_text("validation"), corpus_text("train")
    pieces = ["".join(vocab[row[:40]]) for row in batch.targets]
    assert all(piece in validation for piece in pieces)
    assert sum(piece not in train for piece in pieces) >= 3  # a line can repeat across paragraphs, rarely
    assert held_out_task(TranslationTask()).split == "test"
    assert held_out_task(TranslationTask(split="test")).split == "test"
    assert len(train) > len(validation)


def test_a_generated_task_is_its_own_held_out_task():
    copy = TASKS["copy"]()
    assert held_out_task(copy) is copy
