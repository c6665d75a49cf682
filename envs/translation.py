"""Translation-like tasks with a known word alignment, generated offline by heed's own grammar.

Two :class:`heed.envs.sequence.SequenceTask` entries (``loss == "classes"``), at word level (default)
or, with ``level="char"``, at character level (below):

- ``translation``: English-like -> German-like sentences with the lecture's reorderings. A sentence
  is 1 to ``max_clauses`` clauses joined by "and" / "because" / "while", then ".". Clauses::

      NAME sees the old dog of Anna           -> NAME sieht der alte Hund des Anna        (monotone)
      NAME tries to reach the official residence of Sharif
                              -> NAME versucht die offizielle Residenz des Sharif zu erreichen
      because NAME sees a red car             -> weil NAME ein roter Wagen sieht       (verb final)
      because NAME tries to V NP              -> weil NAME NP zu V versucht

  Articles and adjectives agree with the noun's gender (der/die/das; ein roter Wagen, eine rote Tür,
  ein rotes Haus), so the article's and the adjective's translation depend on a noun further on. Every
  source word becomes exactly one target word, so the alignment is a permutation. Lexicon: 45 nouns,
  25 adjectives, 30 verbs, 20 names (161 source words, 215 target classes with the inflected forms);
  lengths 3 to ``max_words`` (default 60) words.
- ``dates``: a date written as "3 march 1999", "march 3 , 1999", "the 3rd of mar 1999", ... ->
  "1999 - 03 - 03" (ISO order: non-monotone; "the", "of" and "," are aligned to nothing, the "-"
  of the target to no source word).

Layout of one batch (the *seq2seq layout*, read by :mod:`heed.agents.seq2seq`): with ``Vs`` source
words and ``K`` target classes (class 0 is the boundary ``</s>``), ``D = Vs + K + 2`` and::

    steps [0, S):      source word one-hot in channels [0, Vs), source flag (channel D-2) = 1;
                       rows with shorter sources are padded with all-zero steps
    steps [S, S + M):  the teacher-forced previous target class one-hot in channels [Vs, Vs + K)
                       (</s> at the first decoder step), target flag (channel D-1) = 1; all-zero padding
    targets [B, T]:    int64 target class y_i at decoder step S + i (the last is </s>), 0 elsewhere
    mask [B, T]:       1 on decoder steps only

``S`` is the batch's longest source and ``M`` its longest target plus one, so every row's decoder
starts at column ``S``. Sentences whose crc32 (of their word ids) ends in 0 (mod 10) form the
held-out split (``split="test"``); the default ``split="train"`` never yields them.

Character level (``level="char"``): the same sentences (the same generator stream), each written as
its characters with one space between words, ``"Anna sieht"`` -> ``A n n a ␣ s i e h t``; the
vocabularies are the characters of the word vocabularies plus the space (``</s>`` stays target class
0), and the held-out split is the word level's. A :class:`Pair`'s ``alignment`` stays over *words*,
and ``source_words`` / ``target_words`` give the word index of each character (-1 on a space), so maps
over characters can be summed to words. :meth:`_PairTask.target_words` turns classes back into words
(characters joined, split at spaces): BLEU and exact match are always on words.
"""

from __future__ import annotations

import calendar
import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

from heed.envs.errors import require
from heed.envs.sequence import Batch, check_options

BOUNDARY = "</s>"  # target class 0: the decoder's start input and its end-of-sentence output


class Pair(NamedTuple):
    """One sentence pair as token ids, with ``alignment[i]`` = the source index of target word i (-1: none).

    At word level a token is a word and the two word maps are empty; at character level
    ``source_words[k]`` (``target_words[k]``) is the index of the word character k belongs to (-1: a
    space), and ``alignment`` is over words.
    """

    source: tuple[int, ...]
    target: tuple[int, ...]
    alignment: tuple[int, ...]
    source_words: tuple[int, ...] = ()
    target_words: tuple[int, ...] = ()


def token_words(pair: Pair) -> tuple[list[int], list[int]]:
    """The word index of every source and target token of ``pair`` (the identity at word level)."""
    if pair.source_words:
        return list(pair.source_words), list(pair.target_words)
    return list(range(len(pair.source))), list(range(len(pair.target)))


def _characters(words: list[str]) -> tuple[list[str], tuple[int, ...]]:
    """The characters of ``words`` joined by single spaces, and each character's word index (-1: space)."""
    chars: list[str] = []
    owner: list[int] = []
    for i, word in enumerate(words):
        if i:
            chars.append(" ")
            owner.append(-1)
        chars += list(word)
        owner += [i] * len(word)
    return chars, tuple(owner)


def encode_pairs(pairs: list[Pair], source_size: int, target_size: int) -> Batch:
    """The seq2seq layout (module docstring) of ``pairs``: inputs ``[B, S + M, Vs + K + 2]``."""
    batch = len(pairs)
    s = max(len(p.source) for p in pairs)
    m = max(len(p.target) for p in pairs) + 1
    dim = source_size + target_size + 2
    inputs = np.zeros((batch, s + m, dim), np.float32)
    targets = np.zeros((batch, s + m), np.int64)
    mask = np.zeros((batch, s + m), np.float32)
    for b, pair in enumerate(pairs):
        n = len(pair.source)
        inputs[b, np.arange(n), list(pair.source)] = 1.0
        inputs[b, :n, dim - 2] = 1.0
        out = [*pair.target, 0]
        previous = [0, *pair.target]
        steps = s + np.arange(len(out))
        inputs[b, steps, source_size + np.asarray(previous)] = 1.0
        inputs[b, steps, dim - 1] = 1.0
        targets[b, steps] = out
        mask[b, steps] = 1.0
    return Batch(inputs, targets, mask)


def _held_out(source: tuple[int, ...]) -> bool:
    return zlib.crc32(np.asarray(source, np.int32).tobytes()) % 10 == 0


@dataclass(frozen=True)
class _PairTask:
    """What both tasks share: vocabularies, the split, sampling pairs and encoding them."""

    split: str = "train"
    level: str = "word"
    loss: ClassVar[str] = "classes"
    source_vocab: tuple[str, ...] = field(init=False, repr=False, default=())
    """the source tokens: words, or characters with ``level="char"``"""
    target_vocab: tuple[str, ...] = field(init=False, repr=False, default=())
    """the target classes (class 0 is ``</s>``): words, or characters with ``level="char"``"""
    word_vocabs: tuple[tuple[str, ...], tuple[str, ...]] = field(init=False, repr=False, default=((), ()))
    """the source and target *word* vocabularies (the same at both levels; they fix the held-out split)"""

    def _check_split(self) -> None:
        require(
            self.split in ("train", "test", "all"), f"split must be train, test or all, got '{self.split}'"
        )
        require(self.level in ("word", "char"), f"level must be word or char, got '{self.level}'")

    def _set_vocabularies(self, source: list[str], target: list[str]) -> None:
        """Store the word vocabularies and the token vocabularies of the task's level."""
        words = (tuple(dict.fromkeys(source)), tuple(dict.fromkeys(target)))
        object.__setattr__(self, "word_vocabs", words)
        if self.level == "char":
            chars = lambda vocab: sorted({c for w in vocab if w != BOUNDARY for c in w})  # noqa: E731
            source_tokens, target_tokens = (" ", *chars(words[0])), (BOUNDARY, " ", *chars(words[1]))
        else:
            source_tokens, target_tokens = words
        object.__setattr__(self, "source_vocab", tuple(source_tokens))
        object.__setattr__(self, "target_vocab", tuple(target_tokens))

    def held_out(self) -> _PairTask:
        """The same task on the held-out sentences (``split="test"``: what a trainer evaluates on)."""
        return self if self.split == "test" else dataclasses.replace(self, split="test")

    @property
    def input_size(self) -> int:
        return len(self.source_vocab) + len(self.target_vocab) + 2

    @property
    def output_size(self) -> int:
        return len(self.target_vocab)

    def _words(self, rng: np.random.Generator) -> tuple[list[str], list[str], list[int]]:
        raise NotImplementedError

    def pair_of(self, source: list[str], target: list[str], alignment: tuple[int, ...] | list[int]) -> Pair:
        """The :class:`Pair` of a sentence given as words, at the task's level."""
        if self.level == "word":
            src_id = {w: i for i, w in enumerate(self.source_vocab)}
            tgt_id = {w: i for i, w in enumerate(self.target_vocab)}
            return Pair(tuple(src_id[w] for w in source), tuple(tgt_id[w] for w in target), tuple(alignment))
        src_id = {c: i for i, c in enumerate(self.source_vocab)}
        tgt_id = {c: i for i, c in enumerate(self.target_vocab)}
        (source_chars, source_owner), (target_chars, target_owner) = _characters(source), _characters(target)
        return Pair(
            tuple(src_id[c] for c in source_chars),
            tuple(tgt_id[c] for c in target_chars),
            tuple(alignment),
            source_owner,
            target_owner,
        )

    def sample_pairs(self, count: int, rng: np.random.Generator) -> list[Pair]:
        """``count`` pairs of the task's split (held-out sentences are rejected from ``train`` and kept in ``test``)."""
        src_id = {w: i for i, w in enumerate(self.word_vocabs[0])}
        pairs: list[Pair] = []
        while len(pairs) < count:
            source, target, alignment = self._words(rng)
            ids = tuple(src_id[w] for w in source)
            if self.split != "all" and _held_out(ids) != (self.split == "test"):
                continue
            pairs.append(self.pair_of(source, target, alignment))
        return pairs

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return encode_pairs(
            self.sample_pairs(batch_size, rng), len(self.source_vocab), len(self.target_vocab)
        )

    def _as_words(self, ids, vocab: tuple[str, ...]) -> list[str]:
        tokens = [vocab[i] for i in ids]
        return tokens if self.level == "word" else "".join(tokens).split()

    def target_words(self, classes) -> list[str]:
        """The words of target classes (at character level: joined, then split at spaces)."""
        return self._as_words(classes, self.target_vocab)

    def words(self, pair: Pair) -> tuple[list[str], list[str]]:
        """The source and target words of a pair (at either level)."""
        return self._as_words(pair.source, self.source_vocab), self.target_words(pair.target)


# --- the English-like -> German-like grammar --------------------------------------------------------

# fmt: off
NOUNS = (  # english, german, gender
    ("dog", "Hund", "m"), ("cat", "Katze", "f"), ("house", "Haus", "n"), ("tree", "Baum", "m"),
    ("city", "Stadt", "f"), ("book", "Buch", "n"), ("car", "Wagen", "m"), ("door", "Tuer", "f"),
    ("child", "Kind", "n"), ("garden", "Garten", "m"), ("street", "Strasse", "f"), ("window", "Fenster", "n"),
    ("friend", "Freund", "m"), ("school", "Schule", "f"), ("water", "Wasser", "n"), ("king", "Koenig", "m"),
    ("queen", "Koenigin", "f"), ("horse", "Pferd", "n"), ("river", "Fluss", "m"), ("bridge", "Bruecke", "f"),
    ("ship", "Schiff", "n"), ("mountain", "Berg", "m"), ("lamp", "Lampe", "f"), ("picture", "Bild", "n"),
    ("table", "Tisch", "m"), ("flower", "Blume", "f"), ("bread", "Brot", "n"), ("minister", "Minister", "m"),
    ("residence", "Residenz", "f"), ("office", "Buero", "n"), ("teacher", "Lehrer", "m"), ("church", "Kirche", "f"),
    ("village", "Dorf", "n"), ("key", "Schluessel", "m"), ("bottle", "Flasche", "f"), ("song", "Lied", "n"),
    ("apple", "Apfel", "m"), ("island", "Insel", "f"), ("letter", "Brief", "m"), ("boat", "Boot", "n"),
    ("road", "Weg", "m"), ("kitchen", "Kueche", "f"), ("bed", "Bett", "n"), ("chair", "Stuhl", "m"),
    ("clock", "Uhr", "f"),
)
ADJECTIVES = (
    ("big", "gross"), ("small", "klein"), ("old", "alt"), ("new", "neu"), ("red", "rot"), ("green", "gruen"),
    ("blue", "blau"), ("official", "offiziell"), ("beautiful", "schoen"), ("young", "jung"), ("long", "lang"),
    ("short", "kurz"), ("cold", "kalt"), ("warm", "warm"), ("quiet", "still"), ("fast", "schnell"),
    ("slow", "langsam"), ("rich", "reich"), ("poor", "arm"), ("strong", "stark"), ("weak", "schwach"),
    ("white", "weiss"), ("black", "schwarz"), ("famous", "beruehmt"), ("wild", "wild"),
)
VERBS = (  # english infinitive, 3rd singular, german infinitive, 3rd singular
    ("see", "sees", "sehen", "sieht"), ("find", "finds", "finden", "findet"), ("reach", "reaches", "erreichen", "erreicht"),
    ("buy", "buys", "kaufen", "kauft"), ("sell", "sells", "verkaufen", "verkauft"), ("build", "builds", "bauen", "baut"),
    ("visit", "visits", "besuchen", "besucht"), ("paint", "paints", "malen", "malt"), ("open", "opens", "oeffnen", "oeffnet"),
    ("close", "closes", "schliessen", "schliesst"), ("carry", "carries", "tragen", "traegt"), ("read", "reads", "lesen", "liest"),
    ("write", "writes", "schreiben", "schreibt"), ("love", "loves", "lieben", "liebt"), ("hear", "hears", "hoeren", "hoert"),
    ("call", "calls", "rufen", "ruft"), ("need", "needs", "brauchen", "braucht"), ("clean", "cleans", "putzen", "putzt"),
    ("watch", "watches", "beobachten", "beobachtet"), ("bring", "brings", "bringen", "bringt"),
    ("take", "takes", "nehmen", "nimmt"), ("leave", "leaves", "verlassen", "verlaesst"), ("keep", "keeps", "behalten", "behaelt"),
    ("show", "shows", "zeigen", "zeigt"), ("wash", "washes", "waschen", "waescht"),
)
INTRANSITIVE = (
    ("sleep", "sleeps", "schlafen", "schlaeft"), ("laugh", "laughs", "lachen", "lacht"), ("wait", "waits", "warten", "wartet"),
    ("sing", "sings", "singen", "singt"), ("work", "works", "arbeiten", "arbeitet"),
)
NAMES = ("Anna", "Peter", "Maria", "Thomas", "Laura", "Jonas", "Sophie", "Felix", "Clara", "Paul", "Emma", "Lukas",
         "Mia", "Ben", "Lena", "Noah", "Sharif", "Nawaz", "Greta", "Otto")
ATTEMPTS = (("tries", "versucht"), ("hopes", "hofft"), ("plans", "plant"))
CONJUNCTIONS = (("and", "und", False), ("because", "weil", True), ("while", "waehrend", True))  # verb final?
DEFINITE = {"m": "der", "f": "die", "n": "das"}
INDEFINITE = {"m": "ein", "f": "eine", "n": "ein"}
STRONG = {"m": "er", "f": "e", "n": "es"}  # adjective ending after ein/eine; after der/die/das always -e
FUNCTION = (("the", None), ("a", None), ("of", "des"), ("to", "zu"), (".", "."))
# fmt: on

Words = list[tuple[str, str, int]]  # (source word, target word, source index) in TARGET order


class _Sentence:
    """A sentence under construction: source words in order, target words with their source index."""

    def __init__(self) -> None:
        self.source: list[str] = []

    def word(self, en: str, de: str) -> Words:
        self.source.append(en)
        return [(en, de, len(self.source) - 1)]


def _noun_phrase(s: _Sentence, rng: np.random.Generator) -> Words:
    """``the|a ADJ* N [of NAME]`` -> ``der|die|das|ein|eine ADJ-e|-er|-es N [des NAME]`` (agreeing)."""
    en_noun, de_noun, gender = NOUNS[rng.integers(len(NOUNS))]
    definite = bool(rng.random() < 0.6)
    article = s.word("the", DEFINITE[gender]) if definite else s.word("a", INDEFINITE[gender])
    ending = "e" if definite else STRONG[gender]
    adjectives: Words = []
    for _ in range(int(rng.choice(3, p=(0.4, 0.4, 0.2)))):
        en_adj, de_adj = ADJECTIVES[rng.integers(len(ADJECTIVES))]
        adjectives += s.word(en_adj, de_adj + ending)
    out = article + adjectives + s.word(en_noun, de_noun)
    if rng.random() < 0.35:
        name = NAMES[rng.integers(len(NAMES))]
        out += s.word("of", "des") + s.word(name, name)
    return out


def _clause(s: _Sentence, rng: np.random.Generator, verb_final: bool) -> Words:
    """Subject, verb (or ``tries to V``), object; the German verb goes last when ``verb_final``."""
    if rng.random() < 0.6:
        name = NAMES[rng.integers(len(NAMES))]
        subject = s.word(name, name)
    else:
        subject = _noun_phrase(s, rng)
    intransitive = rng.random() < 0.15
    en_inf, en_3sg, de_inf, de_3sg = (INTRANSITIVE if intransitive else VERBS)[
        rng.integers(len(INTRANSITIVE if intransitive else VERBS))
    ]
    if rng.random() < 0.4:  # NAME tries to V NP -> NAME versucht NP zu V  (weil NAME NP zu V versucht)
        en_try, de_try = ATTEMPTS[rng.integers(len(ATTEMPTS))]
        attempt = s.word(en_try, de_try)
        infinitive = s.word("to", "zu") + s.word(en_inf, de_inf)
        obj = [] if intransitive else _noun_phrase(s, rng)
        return subject + (obj + infinitive + attempt if verb_final else attempt + obj + infinitive)
    verb = s.word(en_3sg, de_3sg)
    obj = [] if intransitive else _noun_phrase(s, rng)
    return subject + (obj + verb if verb_final else verb + obj)


@dataclass(frozen=True)
class TranslationTask(_PairTask):
    """English-like -> German-like translation with reordering and agreement (module docstring)."""

    max_clauses: int = 6
    max_words: int = 60
    name: ClassVar[str] = "translation"
    env_id: ClassVar[str] = "heed/Translation-v0"
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {"max_clauses": (1, 20), "max_words": (3, 400)}

    def __post_init__(self) -> None:
        self._check_split()
        check_options(self.name, {k: getattr(self, k) for k in self.option_ranges}, self.option_ranges)
        source = [en for en, _ in FUNCTION] + [n[0] for n in NOUNS] + [a[0] for a in ADJECTIVES]
        source += [v[i] for v in VERBS + INTRANSITIVE for i in (0, 1)] + [a[0] for a in ATTEMPTS]
        source += [c[0] for c in CONJUNCTIONS] + list(NAMES)
        target = [
            BOUNDARY,
            *DEFINITE.values(),
            *INDEFINITE.values(),
            "des",
            "zu",
            ".",
            *(n[1] for n in NOUNS),
        ]
        target += [a[1] + e for a in ADJECTIVES for e in ("e", "er", "es")]
        target += [v[i] for v in VERBS + INTRANSITIVE for i in (2, 3)] + [a[1] for a in ATTEMPTS]
        target += [c[1] for c in CONJUNCTIONS] + list(NAMES)
        self._set_vocabularies(source, target)

    def _words(self, rng: np.random.Generator) -> tuple[list[str], list[str], list[int]]:
        clauses = int(rng.integers(1, self.max_clauses + 1))
        while True:
            s = _Sentence()
            out = _clause(s, rng, verb_final=False)
            for _ in range(clauses - 1):
                en, de, verb_final = CONJUNCTIONS[rng.integers(len(CONJUNCTIONS))]
                out += s.word(en, de) + _clause(s, rng, verb_final)
            out += s.word(".", ".")
            if len(s.source) <= self.max_words:
                return s.source, [de for _, de, _ in out], [j for _, _, j in out]
            clauses = max(1, clauses - 1)


# --- dates -------------------------------------------------------------------------------------------

MONTHS = tuple(calendar.month_name[1:])
YEARS = tuple(str(y) for y in range(1950, 2050))


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


@dataclass(frozen=True)
class DateTask(_PairTask):
    """Date normalisation, "march 3 , 1999" -> "1999 - 03 - 03": a known non-monotone alignment."""

    name: ClassVar[str] = "dates"
    env_id: ClassVar[str] = "heed/Dates-v0"

    def __post_init__(self) -> None:
        self._check_split()
        days = [str(d) for d in range(1, 32)] + [_ordinal(d) for d in range(1, 32)]
        months = [m.lower() for m in MONTHS] + [m[:3].lower() for m in MONTHS]
        source = days + months + list(YEARS) + ["the", "of", ","]
        target = [
            BOUNDARY,
            "-",
            *YEARS,
            *(f"{m:02d}" for m in range(1, 13)),
            *(f"{d:02d}" for d in range(1, 32)),
        ]
        self._set_vocabularies(source, target)

    def _words(self, rng: np.random.Generator) -> tuple[list[str], list[str], list[int]]:
        year = int(rng.integers(1950, 2050))
        month = int(rng.integers(1, 13))
        day = int(rng.integers(1, calendar.monthrange(year, month)[1] + 1))
        month_word = MONTHS[month - 1].lower()
        if rng.random() < 0.5:
            month_word = month_word[:3]
        style = int(rng.integers(3))
        if style == 0:  # 3 march 1999
            source, where = [str(day), month_word, str(year)], (0, 1, 2)
        elif style == 1:  # march 3 , 1999
            source, where = [month_word, str(day), ",", str(year)], (1, 0, 3)
        else:  # the 3rd of march 1999
            source, where = ["the", _ordinal(day), "of", month_word, str(year)], (1, 3, 4)
        target = [str(year), "-", f"{month:02d}", "-", f"{day:02d}"]
        return source, target, [where[2], -1, where[1], -1, where[0]]
