"""A Python generator of bAbI stories, tasks 1-3 (Weston et al. 2015), and a QA task over them.

The official generator is Lua/Torch7 and the data is a download, so heed writes its own stories in the
official text format (numbered lines; a question line is ``N question?<TAB>answer<TAB>supporting ids``)::

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary?	bathroom	1

World (``/work/shared/REFERENCE.md``): locations bedroom, kitchen, garden, hallway, bathroom,
office; objects apple, football, milk; actors Mary, John, Sandra, Daniel.

- Task 1, single supporting fact: "Where is ACTOR?" -> the actor's last location.
- Task 2, two supporting facts: "Where is the OBJECT?" -> where its holder is now, or where it was
  dropped (supports: the pick-up or drop line and the holder's last move before it / since).
- Task 3, three supporting facts: "Where was the OBJECT before the LOCATION?" -> the location the
  object was in before it entered LOCATION (which it entered exactly once).

The ``babi`` :class:`heed.envs.sequence.SequenceTask` turns one story + its final question into a sequence
whose last step carries the target, the answer location (``output_size`` = 6 classes); batches are
right-padded with zero vectors. Two encodings:

- ``encoding="facts"`` (default, as in the papers' models: MemN2N, the Universal Transformer): one step
  per sentence. Step vector = the one-hot words of the sentence in word slots,
  ``x[j * V + w_j] = 1`` for word j (``input_size = MAX_WORDS * V``), so a linear embedding of it is
  ``sum_j E_j[w_j]``: position-specific word embeddings, a learned generalisation of MemN2N's
  position encoding ``l_j * A w_j``. The question is the last step.
- ``encoding="words"``: one one-hot word per step (``input_size = V``), then an ``<answer>`` token.
  Harder for a self-attention model: "the LAST sentence about Mary" becomes a comparison over word
  positions tens of steps apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from heed.envs.errors import HeedError, require
from heed.envs.sequence import Batch, check_options

LOCATIONS = ("bedroom", "kitchen", "garden", "hallway", "bathroom", "office")
OBJECTS = ("apple", "football", "milk")
ACTORS = ("Mary", "John", "Sandra", "Daniel")
MOVES = ("moved to the", "went to the", "journeyed to the", "travelled to the", "went back to the")
PICKS = ("picked up the {} there", "got the {} there", "grabbed the {} there", "took the {} there")
DROPS = ("dropped the {}", "discarded the {}", "put down the {}", "left the {}")
ANSWER_TOKEN = "<answer>"


@dataclass
class World:
    """The state a story has built so far, with the line that caused each fact."""

    actor_loc: dict[str, str] = field(default_factory=dict)
    actor_move_line: dict[str, int] = field(default_factory=dict)
    holder: dict[str, str] = field(default_factory=dict)  # object -> actor holding it
    object_loc: dict[str, str] = field(default_factory=dict)  # object -> location while on the floor
    object_line: dict[str, int] = field(default_factory=dict)  # last pick-up/drop line of the object
    trail: dict[str, list[tuple[str, int, int]]] = field(
        default_factory=dict
    )  # (loc, entry line, pick-up line)


def _enter(world: World, obj: str, loc: str, line: int, pick_line: int) -> None:
    trail = world.trail.setdefault(obj, [])
    if not trail or trail[-1][0] != loc:
        trail.append((loc, line, pick_line))


def _statement(task: int, world: World, rng: np.random.Generator, line: int) -> str:
    """Pick a random consistent event, apply it to ``world`` and return its sentence."""
    actor = ACTORS[rng.integers(len(ACTORS))]
    held = [o for o, a in world.holder.items() if a == actor]
    here = world.actor_loc.get(actor)
    choice = rng.random()
    if task >= 2 and here is not None and held and choice < 0.25:
        obj = held[rng.integers(len(held))]
        del world.holder[obj]
        world.object_loc[obj], world.object_line[obj] = here, line
        return f"{actor} {DROPS[rng.integers(len(DROPS))].format(obj)}."
    free = [o for o in OBJECTS if o not in world.holder and world.object_loc.get(o, here) == here]
    if task >= 2 and here is not None and free and choice < 0.5:
        obj = free[rng.integers(len(free))]
        world.holder[obj], world.object_line[obj] = actor, line
        world.object_loc.pop(obj, None)
        _enter(world, obj, here, line, line)
        return f"{actor} {PICKS[rng.integers(len(PICKS))].format(obj)}."
    loc = LOCATIONS[rng.integers(len(LOCATIONS))]
    while loc == here:
        loc = LOCATIONS[rng.integers(len(LOCATIONS))]
    world.actor_loc[actor], world.actor_move_line[actor] = loc, line
    for obj in held:
        _enter(world, obj, loc, line, world.object_line[obj])
    return f"{actor} {MOVES[rng.integers(len(MOVES))]} {loc}."


def _question(task: int, world: World, rng: np.random.Generator) -> tuple[str, str, list[int]] | None:
    """A random answerable question ``(text, answer, supporting line ids)`` or None."""
    if task == 1:
        actors = [a for a in ACTORS if a in world.actor_loc]
        if not actors:
            return None
        a = actors[rng.integers(len(actors))]
        return f"Where is {a}?", world.actor_loc[a], [world.actor_move_line[a]]
    if task == 2:
        known = [o for o in OBJECTS if o in world.object_loc or o in world.holder]
        if not known:
            return None
        o = known[rng.integers(len(known))]
        if o in world.holder:
            a = world.holder[o]
            return (
                f"Where is the {o}?",
                world.actor_loc[a],
                sorted({world.object_line[o], world.actor_move_line[a]}),
            )
        trail = world.trail[o]
        return f"Where is the {o}?", world.object_loc[o], sorted({world.object_line[o], trail[-1][1]})
    options = []
    for o, trail in world.trail.items():
        names = [t[0] for t in trail]
        for i in range(1, len(trail)):
            if names.count(names[i]) == 1:
                options.append((o, i))
    if not options:
        return None
    o, i = options[rng.integers(len(options))]
    (prev, prev_line, _), (loc, line, pick) = world.trail[o][i - 1], world.trail[o][i]
    return f"Where was the {o} before the {loc}?", prev, sorted({prev_line, line, pick})


def generate_story(task: int, rng: np.random.Generator, statements: int, questions: int = 1) -> str:
    """One story in the official format: ``statements`` facts per question, ``questions`` questions.

    More facts are added while no question is answerable yet. Returns the text (``\\n``-separated).
    """
    require(task in (1, 2, 3), f"bAbI task must be 1, 2 or 3, got {task}")
    world, lines = World(), []
    for _ in range(questions):
        count = 0
        while True:
            if count >= statements:
                q = _question(task, world, rng)
                if q is not None:
                    break
            lines.append(f"{len(lines) + 1} {_statement(task, world, rng, len(lines) + 1)}")
            count += 1
        text, answer, support = q
        lines.append(f"{len(lines) + 1} {text}\t{answer}\t{' '.join(map(str, support))}")
    return "\n".join(lines)


@dataclass
class QA:
    """One question with its story so far: ``facts`` maps line id -> sentence."""

    facts: dict[int, str]
    question: str
    answer: str
    supports: list[int]


def parse_babi(text: str) -> list[QA]:
    """Parse official-format text (one or more stories) into one :class:`QA` per question line."""
    out, facts = [], {}
    for raw in text.strip().splitlines():
        number, _, rest = raw.partition(" ")
        if int(number) == 1:
            facts = {}
        if "\t" in rest:
            question, answer, support = rest.split("\t")
            out.append(QA(dict(facts), question.strip(), answer.strip(), [int(s) for s in support.split()]))
        else:
            facts[int(number)] = rest.strip()
    return out


def tokenize(sentence: str) -> list[str]:
    """Lower-case words with ``.`` and ``?`` as their own tokens."""
    return sentence.lower().replace(".", " .").replace("?", " ?").split()


def _build_vocab() -> list[str]:
    words = {w for phrase in MOVES + PICKS + DROPS for w in tokenize(phrase.format("x"))} - {"x"}
    words |= {w.lower() for w in LOCATIONS + OBJECTS + ACTORS}
    words |= set(tokenize("Where is the ? Where was the before the ? ."))
    return sorted(words) + [ANSWER_TOKEN]


VOCAB: list[str] = _build_vocab()
WORD_INDEX: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}


MAX_WORDS = 8  # longest sentence: "where was the football before the bathroom ?"


def sentences(qa: QA) -> list[str]:
    """The story's facts in line order, then the question."""
    return [s for _, s in sorted(qa.facts.items())] + [qa.question]


def support_steps(qa: QA) -> list[int]:
    """Indices into :func:`sentences` (0-based) of the question's supporting facts.

    Facts are numbered from 1 in the official format but the ids need not be consecutive (a
    story with several questions numbers its question lines too), so the index is the fact's rank.
    """
    order = sorted(qa.facts)
    return [order.index(line) for line in qa.supports]


def encode(qa: QA) -> list[int]:
    """Token ids of the facts (in line order), the question and the final ``<answer>`` token."""
    return [WORD_INDEX[w] for s in sentences(qa) for w in tokenize(s)] + [WORD_INDEX[ANSWER_TOKEN]]


class BabiTask:
    """Question answering over generated stories of bAbI task ``task`` (1, 2 or 3; 0 = joint: each
    sequence draws its task uniformly from 1-3).

    Each sequence: one story of ``min_statements..max_statements`` facts (more if needed to make the
    question answerable) and its question; the target (a location id) sits at the final step.
    """

    name, loss, env_id = "babi", "classes", "heed/Babi-v0"
    option_ranges = {"task": (0, 3), "min_statements": (1, 1000), "max_statements": (1, 1000)}

    def __init__(
        self, task: int = 1, min_statements: int = 2, max_statements: int = 10, encoding: str = "facts"
    ) -> None:
        values = {"task": task, "min_statements": min_statements, "max_statements": max_statements}
        check_options(self.name, values, self.option_ranges, (("min_statements", "max_statements"),))
        require(encoding in ("facts", "words"), f"bAbI encoding must be 'facts' or 'words', got '{encoding}'")
        self.task, self.min_statements, self.max_statements = task, min_statements, max_statements
        self.encoding = encoding
        width = MAX_WORDS * len(VOCAB) if encoding == "facts" else len(VOCAB)
        self.input_size, self.output_size = width, len(LOCATIONS)

    def sample_qa(self, rng: np.random.Generator) -> QA:
        task = self.task or int(rng.integers(1, 4))
        count = int(rng.integers(self.min_statements, self.max_statements + 1))
        return parse_babi(generate_story(task, rng, count))[0]

    def _active(self, qa: QA) -> list[tuple[int, int]]:
        """``(step, input unit)`` pairs set to 1 for one story."""
        if self.encoding == "words":
            return list(enumerate(encode(qa)))
        width, out = len(VOCAB), []
        for t, sentence in enumerate(sentences(qa)):
            words = tokenize(sentence)
            if len(words) > MAX_WORDS:  # (no eager f-string per sentence: this runs for every sample)
                raise HeedError(f"sentence longer than {MAX_WORDS} words: '{sentence}'")
            out += [(t, j * width + WORD_INDEX[w]) for j, w in enumerate(words)]
        return out

    def sentence_spans(self, qa: QA) -> list[tuple[int, int]]:
        """The input steps ``[start, stop)`` of each sentence of ``qa`` (facts in line order, then the
        question) under this task's encoding: one step each for ``facts``, one per word for ``words``
        (the final ``<answer>`` step belongs to no sentence)."""
        if self.encoding == "facts":
            return [(t, t + 1) for t in range(len(sentences(qa)))]
        stops = np.cumsum([len(tokenize(s)) for s in sentences(qa)])
        return [(int(b - len(tokenize(s))), int(b)) for s, b in zip(sentences(qa), stops)]

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.batch([self.sample_qa(rng) for _ in range(batch_size)])

    def batch(self, seqs: list[QA]) -> Batch:
        """Encode stories (each with its final question) into one right-padded batch."""
        batch_size = len(seqs)
        active = [self._active(q) for q in seqs]
        lengths = [max(t for t, _ in a) + 1 for a in active]
        steps = max(lengths)
        x = np.zeros((batch_size, steps, self.input_size), dtype=np.float32)
        y = np.zeros((batch_size, steps), dtype=np.int64)
        mask = np.zeros((batch_size, steps), dtype=np.float32)
        for b, (q, pairs, length) in enumerate(zip(seqs, active, lengths)):
            t, unit = zip(*pairs)
            x[b, list(t), list(unit)] = 1.0
            y[b, length - 1] = LOCATIONS.index(q.answer)
            mask[b, length - 1] = 1.0
        return Batch(x, y, mask)

    def labels(self, inputs: np.ndarray) -> list[str]:
        """Decode one sequence's inputs ``[T, D]`` (padding dropped) into a label per step: the word,
        or for ``encoding="facts"`` the sentence."""
        width, out = len(VOCAB), []
        for row in np.asarray(inputs):
            units = np.flatnonzero(row)
            if units.size == 0:
                break
            out.append(" ".join(VOCAB[u % width] for u in sorted(units)))
        return out
