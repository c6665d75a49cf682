"""bAbI generator: format, answers and supporting facts checked by an independent world simulation."""

import re

import numpy as np
import pytest

from heed.envs.babi import (
    LOCATIONS,
    MAX_WORDS,
    VOCAB,
    BabiTask,
    generate_story,
    parse_babi,
    sentences,
    support_steps,
    tokenize,
)
from heed.envs.errors import HeedError

MOVE = re.compile(r"^(\w+) (?:moved|went|journeyed|travelled|went back) to the (\w+)\.$")
PICK = re.compile(r"^(\w+) (?:picked up|got|grabbed|took) the (\w+) there\.$")
DROP = re.compile(r"^(\w+) (?:dropped|discarded|put down|left) the (\w+)\.$")
LINE = re.compile(r"^(\d+) ([^\t]+?)(?:\t(\w+)\t(\d+(?: \d+)*))?$")


def simulate(lines):
    """Replay a story line by line; yield (question, answer, supports, per-line history) at questions.

    Keeps its own record: where every actor is, who holds what, and the list of locations each object
    visited (consecutive duplicates merged).
    """
    actor, holder, floor, visits, events = {}, {}, {}, {}, {}
    for raw in lines:
        number, text, answer, support = LINE.match(raw).groups()
        number = int(number)
        if answer is None:
            events[number] = text
            if m := MOVE.match(text):
                who, where = m.groups()
                actor[who] = where
                for obj, h in holder.items():
                    if h == who and visits[obj][-1] != where:
                        visits[obj].append(where)
            elif m := PICK.match(text):
                who, obj = m.groups()
                assert obj not in holder, f"{obj} picked up while held: {raw}"
                assert who in actor, f"{who} picks up before being anywhere"
                assert floor.get(obj, actor[who]) == actor[who], f"{obj} is not where {who} is"
                holder[obj] = who
                floor.pop(obj, None)
                visits.setdefault(obj, [])
                if not visits[obj] or visits[obj][-1] != actor[who]:
                    visits[obj].append(actor[who])
            elif m := DROP.match(text):
                who, obj = m.groups()
                assert holder.get(obj) == who, f"{who} drops {obj} without holding it"
                del holder[obj]
                floor[obj] = actor[who]
            else:
                raise AssertionError(f"unknown sentence: {text}")
            continue
        supports = [int(s) for s in support.split()]
        if m := re.match(r"^Where is (\w+)\?$", text):
            truth = actor.get(m.group(1), None)
            if m.group(1) in ("apple", "football", "milk"):
                obj = m.group(1)
                truth = actor[holder[obj]] if obj in holder else floor[obj]
        elif m := re.match(r"^Where is the (\w+)\?$", text):
            obj = m.group(1)
            truth = actor[holder[obj]] if obj in holder else floor[obj]
        elif m := re.match(r"^Where was the (\w+) before the (\w+)\?$", text):
            obj, loc = m.groups()
            assert visits[obj].count(loc) == 1
            truth = visits[obj][visits[obj].index(loc) - 1]
        else:
            raise AssertionError(f"unknown question: {text}")
        yield text, answer, truth, supports, dict(events), number


@pytest.mark.parametrize("task", [1, 2, 3])
def test_answers_match_independent_simulation(task):
    rng = np.random.default_rng(task)
    for _ in range(150):
        text = generate_story(task, rng, statements=int(rng.integers(2, 12)), questions=3)
        lines = text.split("\n")
        assert [int(line.split(" ")[0]) for line in lines] == list(range(1, len(lines) + 1))
        found = list(simulate(lines))
        assert len(found) == 3
        for question, answer, truth, supports, events, number in found:
            assert answer == truth, f"{question} -> {answer}, simulation says {truth}\n{text}"
            assert answer in LOCATIONS
            assert len(supports) <= task and len(supports) >= min(task, 2) - (task == 3)
            assert all(s in events and s < number for s in supports)
            entity = question.split()[-1].rstrip("?") if task < 3 else question.split()[3]
            assert any(entity in events[s] for s in supports)


def test_parse_roundtrip_and_tokens():
    rng = np.random.default_rng(0)
    text = generate_story(2, rng, statements=5, questions=2) + "\n" + generate_story(1, rng, 4)
    qas = parse_babi(text)
    assert len(qas) == 3
    assert all(q.supports and all(s in q.facts for s in q.supports) for q in qas)
    for q in qas:
        for sentence in list(q.facts.values()) + [q.question]:
            assert all(w in VOCAB for w in tokenize(sentence))


@pytest.mark.parametrize("task", [1, 2, 3])
def test_qa_batches_decode_to_the_story(task):
    gen = BabiTask(task=task, max_statements=6, encoding="words")
    batch = gen.sample(8, np.random.default_rng(7))
    assert batch.mask.sum() == 8 and (batch.mask.sum(1) == 1).all()
    qas = [gen.sample_qa(r) for r in [np.random.default_rng(7)]]  # the first story of the same stream
    words = [VOCAB[i] for i in batch.inputs[0].argmax(-1)[: int(batch.mask[0].argmax()) + 1]]
    facts = [w for _, s in sorted(qas[0].facts.items()) for w in tokenize(s)]
    assert words == facts + tokenize(qas[0].question) + ["<answer>"]
    assert LOCATIONS[batch.targets[0, batch.mask[0].argmax()]] == qas[0].answer
    assert (batch.inputs.sum(-1) <= 1).all()


@pytest.mark.parametrize("task", [1, 2, 3])
def test_fact_encoding_puts_one_sentence_per_step_in_word_slots(task):
    gen = BabiTask(task=task, max_statements=6)  # encoding="facts" is the default
    batch = gen.sample(8, np.random.default_rng(3))
    first = gen.sample_qa(np.random.default_rng(3))  # the first story of the same stream
    lines = [s for _, s in sorted(first.facts.items())] + [first.question]
    last = int(batch.mask[0].argmax())
    assert last == len(lines) - 1 and (batch.mask.sum(1) == 1).all()
    assert not batch.inputs[0, last + 1 :].any()  # right padding is all zeros
    width = len(VOCAB)
    for t, sentence in enumerate(lines):  # slot j of step t holds word j of sentence t, one-hot
        slots = batch.inputs[0, t].reshape(MAX_WORDS, width)
        words = tokenize(sentence)
        assert [VOCAB[i] for i in slots[: len(words)].argmax(-1)] == words
        assert (slots[: len(words)].sum(-1) == 1).all() and not slots[len(words) :].any()
    assert gen.labels(batch.inputs[0]) == [" ".join(tokenize(s)) for s in lines]
    assert LOCATIONS[batch.targets[0, last]] == first.answer


def test_unknown_encoding_is_a_clear_error():
    with pytest.raises(HeedError, match="encoding must be 'facts' or 'words'"):
        BabiTask(encoding="chars")


def test_every_sentence_form_fits_the_fact_slots():
    from heed.envs.babi import ACTORS, DROPS, MOVES, OBJECTS, PICKS

    longest_place, longest_object = max(LOCATIONS, key=len), max(OBJECTS, key=len)
    forms = [f"{a} {m} {longest_place}." for a in ACTORS for m in MOVES]
    forms += [f"{a} {p.format(longest_object)}." for a in ACTORS for p in PICKS + DROPS]
    forms += [f"Where was the {longest_object} before the {longest_place}?", "Where is Sandra?"]
    assert max(len(tokenize(f)) for f in forms) == MAX_WORDS


class ScriptedRng:
    """Stands in for ``numpy.random.Generator``: ``integers(n)`` and ``random()`` return the next scripted
    value, so the real generator writes a story chosen by hand."""

    def __init__(self, values):
        self.values = list(values)

    def integers(self, low, high=None):
        value = self.values.pop(0)
        assert isinstance(value, int) and 0 <= value < (low if high is None else high - low)
        return value

    def random(self):
        value = self.values.pop(0)
        assert isinstance(value, float)
        return value


MOVE_CHOICE = 0.9  # rng.random() above 0.5: a move (picks and drops need a draw below 0.5)
HAND_STORIES = {  # task: (scripted draws, the story the generator must write, supporting fact indices)
    1: (
        [0, MOVE_CHOICE, 1, 0, 1, MOVE_CHOICE, 2, 1, 1, MOVE_CHOICE, 3, 0, 1],
        "1 Mary moved to the kitchen.\n2 John went to the garden.\n3 John moved to the hallway.\n"
        "4 Where is John?\thallway\t3",
        [2],
    ),
    2: (
        [0, MOVE_CHOICE, 1, 0, 1, MOVE_CHOICE, 2, 1, 0, 0.4, 2, 0, 1, MOVE_CHOICE, 3, 0, 0, MOVE_CHOICE, 5, 2, 0],
        "1 Mary moved to the kitchen.\n2 John went to the garden.\n3 Mary picked up the milk there.\n"
        "4 John moved to the hallway.\n5 Mary journeyed to the office.\n6 Where is the milk?\toffice\t3 5",
        [2, 4],
    ),
    3: (
        [0, MOVE_CHOICE, 1, 0, 1, MOVE_CHOICE, 2, 1, 0, 0.4, 2, 0, 1, MOVE_CHOICE, 3, 0, 0, MOVE_CHOICE, 5, 2,
         0, MOVE_CHOICE, 2, 4, 1],
        "1 Mary moved to the kitchen.\n2 John went to the garden.\n3 Mary picked up the milk there.\n"
        "4 John moved to the hallway.\n5 Mary journeyed to the office.\n6 Mary went back to the garden.\n"
        "7 Where was the milk before the garden?\toffice\t3 5 6",
        [2, 4, 5],
    ),
}


@pytest.mark.parametrize("task", [1, 2, 3])
def test_supporting_facts_of_a_hand_made_story(task):
    draws, story, supports = HAND_STORIES[task]
    rng = ScriptedRng(draws)
    text = generate_story(task, rng, statements=story.count("\n"))
    assert text == story and not rng.values  # the script wrote exactly the hand-made story
    (qa,) = parse_babi(text)
    assert support_steps(qa) == supports
    facts = sentences(qa)[:-1]
    assert [facts[i] for i in supports] == [story.split("\n")[i].split(" ", 1)[1] for i in supports]


def test_sentence_spans_follow_the_encoding():
    (qa,) = parse_babi(HAND_STORIES[2][1])
    assert BabiTask(encoding="facts").sentence_spans(qa) == [(t, t + 1) for t in range(6)]
    spans = BabiTask(encoding="words").sentence_spans(qa)
    # mary moved to the kitchen . | john went to the garden . | mary picked up the milk there . | ...
    assert spans[:3] == [(0, 6), (6, 12), (12, 19)] and spans[-1] == (spans[-2][1], spans[-2][1] + 5)
    words = BabiTask(encoding="words").batch([qa]).inputs[0].argmax(-1)
    assert [VOCAB[w] for w in words[spans[2][0] : spans[2][1]]] == tokenize("Mary picked up the milk there.")
