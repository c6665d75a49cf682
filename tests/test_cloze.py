"""The entity-anonymised cloze task (envs/cloze.py) and the attentive reader on it (issue 15, item 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heed.envs.cloze import MARKERS, PERSON_VERBS, PLACEHOLDER, TRANSITIVE, VOCAB, ClozeTask
from heed.envs.errors import HeedError
from heed.envs.translation import NAMES

pytestmark = pytest.mark.usefixtures("one_thread")


def deanonymise(words: list[str], names: dict[str, str]) -> list[str]:
    back = {marker: name for name, marker in names.items()}
    return [back.get(w, w) for w in words]


def fits(sentence: list[str], query: list[str]) -> str | None:
    """The entity that, put in the query's blank, makes the query restate ``sentence`` (else None).

    An independent parse: sentence ``S VERBS (the ADJ N [of O] | O) .``, query ``X is PARTICIPLE by A .``
    with ``X`` = ``the ADJ N [of O]`` or ``O``; the participle must be the verb's (the lexicon's tables).
    """
    participle = {third: past for third, past in TRANSITIVE + PERSON_VERBS}
    x, (_, past, _, agent, _) = query[:-5], query[-5:]
    subject, verb, rest = sentence[0], sentence[1], sentence[2:-1]
    if participle[verb] != past or len(x) != len(rest):
        return None
    pairs = list(zip([agent, *x], [subject, *rest]))
    if any(q != w for q, w in pairs if q != PLACEHOLDER):
        return None
    (blank,) = [w for q, w in pairs if q == PLACEHOLDER]
    return blank if blank in MARKERS else None


def test_answer_is_an_entity_of_the_document_and_the_query_fits_one_sentence():
    task = ClozeTask()
    rng = np.random.default_rng(0)
    for _ in range(400):
        story = task.sample_story(rng)
        assert story.answer in MARKERS and story.answer in story.document
        assert story.query.count(PLACEHOLDER) == 1 and story.answer not in story.query
        sentences = [
            [w for w, o in zip(story.document, story.sentence_of_word) if o == i]
            for i in range(max(story.sentence_of_word) + 1)
        ]
        found = [(i, fits(words, story.query)) for i, words in enumerate(sentences)]
        assert [(i, e) for i, e in found if e] == [(story.support, story.answer)], story


def test_entities_are_anonymised_consistently_per_story():
    task = ClozeTask(min_sentences=6, max_sentences=10)
    rng = np.random.default_rng(1)
    seen_markers = {}
    for _ in range(200):
        story = task.sample_story(rng)
        assert len(set(story.names.values())) == len(story.names)  # injective
        assert not set(NAMES) & set(story.document + story.query)  # no name survives
        plain = deanonymise(story.document, story.names)
        markers = [w for w in story.document if w.startswith("@entity")]
        # every occurrence of a marker is the same person: the map is a function of the name
        assert all(story.names[n] == w for n, w in zip(plain, story.document) if w in markers)
        for name, marker in story.names.items():
            seen_markers.setdefault(name, set()).add(marker)
    assert all(len(m) > 3 for m in seen_markers.values())  # a name gets different markers across stories


def test_generation_is_deterministic_per_seed_and_layout_is_the_readers():
    task = ClozeTask()
    a, b = task.sample(5, np.random.default_rng(3)), task.sample(5, np.random.default_rng(3))
    c = task.sample(5, np.random.default_rng(4))
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)
    assert not np.array_equal(a.inputs[:, :10], c.inputs[:, :10])
    stories = [task.sample_story(r) for r in [np.random.default_rng(3)] for _ in range(5)]
    for row, story in enumerate(stories):
        words = task.words(story)
        assert task.labels(a.inputs[row]) == words
        last = len(words) - 1
        assert a.mask[row].sum() == 1 and a.mask[row, last] == 1 and words[last] == "<answer>"
        assert a.targets[row, last] == MARKERS.index(story.answer)
    assert a.inputs.shape[-1] == task.input_size == len(VOCAB) and task.output_size == len(MARKERS)
    with pytest.raises(HeedError):
        ClozeTask(min_sentences=5, max_sentences=2)


def test_reader_trains_on_cloze_and_its_attention_is_drawn(tmp_path):
    """``heed train supervised --task cloze model:reader`` then ``heed reader-attention`` on the run."""
    from heed.agents.common.session import RunConfig
    from heed.agents.reader import ReaderConfig
    from heed.agents.trainers.supervised import Config, main
    from heed.scripts import reader_attention

    for attention in ("additive", "dot"):
        main(
            Config(
                task="cloze", model=ReaderConfig(hidden_size=8, embed_size=8, attention=attention),
                total_sequences=8, batch_size=4, eval_sequences=4, eval_every=8, log_every=4, image_every=4,
                run=RunConfig(run_dir=tmp_path / attention, progress=False),
            )
        )
        out = tmp_path / f"{attention}.png"
        summary = reader_attention.main(reader_attention.Config(run=tmp_path / attention, out=out, questions=6))
        assert 0 <= summary["support_share"] <= 1 and 0 < summary["chance_share"] < 1
        assert 0 <= summary["answer_share"] <= 1 and out.stat().st_size > 1000
    from heed.agents.parts import build_model

    task = ClozeTask()  # the reader's forward shapes on a cloze batch
    batch = task.sample(3, np.random.default_rng(5))
    model = build_model(ReaderConfig(hidden_size=8, embed_size=8, attention="dot"), task.input_size, task.output_size)
    logits, attention, _ = model(torch.as_tensor(batch.inputs))
    steps = batch.inputs.shape[1]
    assert logits.shape == (3, steps, task.output_size) and attention["attention"].shape == (3, steps, steps)
