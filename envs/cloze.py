"""An entity-anonymised cloze task (Hermann et al. 2015), generated offline from the translation grammar's lexicon.

Hermann et al. turned news stories into reading-comprehension questions: every entity of a story is
replaced by a marker ``@entityN`` whose number is drawn afresh for every story, a summary sentence
with one entity blanked (``@placeholder``) is the query, and the answer is the blanked marker. So
the answer cannot come from what a name usually does (the markers carry no meaning across stories):
the reader has to find the part of the document that the query restates.

heed writes such stories itself from :mod:`heed.envs.translation`'s lexicon (names, nouns,
adjectives, transitive verbs). A story is ``min_sentences..max_sentences`` sentences of three forms::

    NAME VERBS the ADJ NOUN .                 Anna sees the old dog .
    NAME VERBS the ADJ NOUN of NAME .         Anna sees the old dog of Peter .
    NAME VERBS NAME .                         Anna calls Peter .

No two sentences of a story share their (verb, adjective, noun) content, nor a person-object verb with
the same doer or the same receiver, and no sentence names the same person twice, so the story
sentence that a query restates is the only one that fits it. The query is one of the
story's sentences with a person-verb-object content restated in another voice, and one of its
entities replaced by ``@placeholder``::

    the old dog is seen by @placeholder .          (answer: the subject, NAME in "NAME sees the old dog")
    the old dog of @placeholder is seen by NAME .  (answer: the owner)
    NAME is called by @placeholder .               (answer: the caller)

Anonymisation: each story draws a random injective map from its names to the markers
``@entity0 .. @entity{M-1}`` (``M = len(NAMES) = 20``), applied to document and query alike, so a
person has one marker throughout a story and a different, random one in the next.

Layout (that of ``babi`` with ``encoding="words"``, read by :mod:`heed.agents.reader`): one one-hot
word per step, the document's words, ``<query>``, the query's words, then ``<answer>``; the target
(the answer's marker number, ``output_size = M`` classes) sits at the ``<answer>`` step, the only
scored step. Batches are right-padded with zero vectors. Every story is drawn afresh from the
generator (no fixed data set; a fixed seed is the held-out set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from heed.envs.sequence import Batch, check_options
from heed.envs.translation import ADJECTIVES, NAMES, NOUNS, VERBS

PLACEHOLDER, QUERY_TOKEN, ANSWER_TOKEN = "@placeholder", "<query>", "<answer>"
MARKERS = tuple(f"@entity{i}" for i in range(len(NAMES)))
#: (3rd singular, past participle) of the verbs that also take a person as object ("Anna calls Peter")
PERSON_VERBS = (("sees", "seen"), ("finds", "found"), ("visits", "visited"), ("calls", "called"),
                ("loves", "loved"), ("hears", "heard"), ("watches", "watched"))
_PARTICIPLES = {
    "sees": "seen", "finds": "found", "reaches": "reached", "buys": "bought", "sells": "sold", "builds": "built",
    "visits": "visited", "paints": "painted", "opens": "opened", "closes": "closed", "carries": "carried",
    "reads": "read", "writes": "written", "loves": "loved", "hears": "heard", "calls": "called",
    "needs": "needed", "cleans": "cleaned", "watches": "watched", "brings": "brought", "takes": "taken",
    "leaves": "left", "keeps": "kept", "shows": "shown", "washes": "washed",
}
TRANSITIVE = tuple((v[1], _PARTICIPLES[v[1]]) for v in VERBS)


class Fact(NamedTuple):
    """One story sentence before anonymisation: ``obj`` is ``(adjective, noun)`` or None (a person object)."""

    subject: str
    verb: tuple[str, str]  # (3rd singular, past participle)
    obj: tuple[str, str] | None
    other: str | None  # the owner ("of NAME") or the person object

    def words(self) -> list[str]:
        if self.obj is None:
            return [self.subject, self.verb[0], self.other, "."]
        owner = ["of", self.other] if self.other else []
        return [self.subject, self.verb[0], "the", *self.obj, *owner, "."]

    def query(self, blank: str) -> list[str]:
        """The sentence restated in the passive, with the entity ``blank`` (subject or other) left out."""
        fill = lambda name: PLACEHOLDER if name == blank else name  # noqa: E731
        if self.obj is None:
            return [fill(self.other), "is", self.verb[1], "by", fill(self.subject), "."]
        owner = ["of", fill(self.other)] if self.other else []
        return ["the", *self.obj, *owner, "is", self.verb[1], "by", fill(self.subject), "."]


class ClozeStory(NamedTuple):
    """One anonymised story: words of the document and query, the answer marker and where it came from."""

    document: list[str]
    query: list[str]
    answer: str  # "@entityN"
    sentence_of_word: list[int]  # [len(document)]: which sentence each document word belongs to
    support: int  # the sentence the query restates
    names: dict[str, str]  # name -> marker, this story's anonymisation


def _vocabulary() -> list[str]:
    words = {"the", "of", ".", "is", "by"} | {w for adj in ADJECTIVES for w in adj[:1]}
    words |= {n[0] for n in NOUNS} | {v for pair in TRANSITIVE + PERSON_VERBS for v in pair}
    return sorted(words) + list(MARKERS) + [PLACEHOLDER, QUERY_TOKEN, ANSWER_TOKEN]


VOCAB: tuple[str, ...] = tuple(_vocabulary())
WORD_INDEX: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}


@dataclass(frozen=True)
class ClozeTask:
    """Entity-anonymised cloze questions over generated stories (module docstring)."""

    min_sentences: int = 3
    max_sentences: int = 8
    name: ClassVar[str] = "cloze"
    env_id: ClassVar[str] = "heed/Cloze-v0"
    loss: ClassVar[str] = "classes"
    input_size: ClassVar[int] = len(VOCAB)
    output_size: ClassVar[int] = len(MARKERS)
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {"min_sentences": (1, 40), "max_sentences": (1, 40)}

    def __post_init__(self) -> None:
        values = {"min_sentences": self.min_sentences, "max_sentences": self.max_sentences}
        check_options(self.name, values, self.option_ranges, (("min_sentences", "max_sentences"),))

    def _fact(self, rng: np.random.Generator, used: set) -> Fact:
        """A fresh sentence whose content (verb, object) is not in ``used`` (which it joins)."""
        while True:
            subject, other = (NAMES[i] for i in rng.choice(len(NAMES), 2, replace=False))
            form = int(rng.choice(3, p=(0.4, 0.35, 0.25)))
            if form == 2:  # a person object: the query keeps one of the two people, so both must be unique
                verb, obj = PERSON_VERBS[rng.integers(len(PERSON_VERBS))], None
                content = {(verb, "by", subject), (verb, "to", other)}
            else:
                verb = TRANSITIVE[rng.integers(len(TRANSITIVE))]
                obj = (ADJECTIVES[rng.integers(len(ADJECTIVES))][0], NOUNS[rng.integers(len(NOUNS))][0])
                other = other if form == 1 else None
                content = {(verb, obj)}
            if not content & used:
                used |= content
                return Fact(subject, verb, obj, other)

    def sample_story(self, rng: np.random.Generator) -> ClozeStory:
        """One story, its query and answer, anonymised with a fresh random map of names to markers."""
        count = int(rng.integers(self.min_sentences, self.max_sentences + 1))
        used: set = set()
        facts = [self._fact(rng, used) for _ in range(count)]
        support = int(rng.integers(count))
        fact = facts[support]
        blank = fact.subject if fact.other is None or rng.random() < 0.5 else fact.other
        people = list(dict.fromkeys(w for f in facts for w in (f.subject, f.other) if w))
        markers = rng.permutation(len(MARKERS))[: len(people)]
        names = {name: MARKERS[m] for name, m in zip(people, markers)}
        anonymise = lambda words: [names.get(w, w) for w in words]  # noqa: E731
        document, owner = [], []
        for i, f in enumerate(facts):
            words = anonymise(f.words())
            document += words
            owner += [i] * len(words)
        return ClozeStory(document, anonymise(fact.query(blank)), names[blank], owner, support, names)

    @staticmethod
    def words(story: ClozeStory) -> list[str]:
        """The step words of a story: document, ``<query>``, query, ``<answer>`` (the target's step)."""
        return [*story.document, QUERY_TOKEN, *story.query, ANSWER_TOKEN]

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        stories = [self.sample_story(rng) for _ in range(batch_size)]
        steps = [[WORD_INDEX[w] for w in self.words(s)] for s in stories]
        length = max(len(s) for s in steps)
        x = np.zeros((batch_size, length, self.input_size), np.float32)
        y = np.zeros((batch_size, length), np.int64)
        mask = np.zeros((batch_size, length), np.float32)
        for b, (story, ids) in enumerate(zip(stories, steps)):
            x[b, np.arange(len(ids)), ids] = 1.0
            y[b, len(ids) - 1] = MARKERS.index(story.answer)
            mask[b, len(ids) - 1] = 1.0
        return Batch(x, y, mask)

    def labels(self, inputs: np.ndarray) -> list[str]:
        """The word of each step of one sequence's inputs ``[T, D]`` (padding dropped)."""
        rows = [row for row in np.asarray(inputs) if row.any()]
        return [VOCAB[int(row.argmax())] for row in rows]
