"""A character-level language-modelling task on text that ships with Python: no download.

The corpus is the documentation inside every Python installation, ``pydoc_data.topics`` (the help
text of ``help("if")``, ``help("FORMATTING")``, ...: about 0.46 M characters of English prose with
reST markup and code samples). The topics quote one another (``help("attribute-access")`` is also
inside ``help("SPECIALMETHODS")``), so the text is split by paragraph, not by topic: the paragraphs
(blocks between blank lines) of all topics, in sorted topic order, each distinct paragraph kept once
(about 0.37 M characters), go to

- ``validation``: the paragraphs whose crc32 is 0 mod 10 (about a tenth of the text);
- ``train``: every other paragraph,

so no paragraph is in both splits (a single line, such as a repeated line of code, still can be: 7 of
the 421 validation lines over 60 characters also occur in the training text on Python 3.12).

Characters: a fixed vocabulary of ``V = 96`` classes, newline then printable ASCII 32..126
(:data:`VOCAB`). Tabs become spaces, typographic quotes, dashes and the ellipsis their ASCII forms,
and any other character is dropped, so the vocabulary does not change with the Python version (the
text itself does, a little: it is the running interpreter's documentation).

Random IDs (``id_every > 0``): after the first line break at or past every ``id_every`` characters an
ID tag ``<id>DDDDDDDD</id>`` (``id_length`` random decimal digits) is inserted on a line of its own.
The digits are drawn afresh from the sampling generator for every window, so they can never be
learned: the lecture's "no pondering on unpredictable IDs inside tags" (Graves 2016, Fig. 24) can be
measured against the predictable text around them.

One batch (``loss == "classes"``)::

    inputs   float32 [B, T, V]   one-hot c_t for a window c_0 .. c_T of the split's text
    targets  int64   [B, T]      the next character c_{t+1}
    mask     float32 [B, T]      all ones

Windows start uniformly at random over the split's text (its paragraphs joined by blank lines). The trainer's cross-entropy per scored step divided by ln 2 is bits per character.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from heed.envs.errors import HeedError, require
from heed.envs.sequence import MAX_LENGTH, Batch, check_options

#: the character classes: newline, then printable ASCII (space .. ~)
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
#: character -> class index
CHAR_INDEX = {c: i for i, c in enumerate(VOCAB)}
#: the stand-in for an ID digit in the stored corpus (replaced by a random digit in every window)
_ID_SLOT = -1
_REPLACE = str.maketrans({"\t": "    ", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                          "\u2013": "-", "\u2014": "--", "\u2026": "..."})
SPLITS = ("train", "validation")


def clean(text: str) -> str:
    """``text`` in the vocabulary: tabs and typographic marks to ASCII, every other character dropped."""
    return "".join(c for c in text.translate(_REPLACE) if c in CHAR_INDEX)


def encode(text: str) -> np.ndarray:
    """Class indices ``[len(text)]`` int64; a character outside :data:`VOCAB` is a :class:`HeedError`."""
    unknown = sorted({c for c in text if c not in CHAR_INDEX})
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:8])
        raise HeedError(f"text has characters outside the vocabulary (newline and printable ASCII): {shown}")
    return np.fromiter((CHAR_INDEX[c] for c in text), np.int64, len(text))


def decode(ids: np.ndarray | list[int]) -> str:
    """The characters of class indices (an ID slot reads as ``#``)."""
    return "".join(VOCAB[i] if i >= 0 else "#" for i in np.asarray(ids).tolist())


def is_validation(paragraph: str) -> bool:
    """Whether a (cleaned) paragraph belongs to the validation split."""
    return zlib.crc32(paragraph.encode()) % 10 == 0


def paragraphs() -> list[str]:
    """The distinct cleaned paragraphs of ``pydoc_data.topics``, in sorted topic order (first occurrence)."""
    from pydoc_data.topics import topics

    seen: dict[str, None] = {}
    for name in sorted(topics):
        for block in clean(topics[name]).split("\n\n"):
            block = block.strip("\n")
            if block.strip():
                seen.setdefault(block, None)
    return list(seen)


@functools.lru_cache(maxsize=4)
def corpus_text(split: str) -> str:
    """The cleaned text of a split: its paragraphs joined by a blank line."""
    require(split in SPLITS, f"split must be one of {', '.join(SPLITS)}, got '{split}'")
    return "\n\n".join(p for p in paragraphs() if is_validation(p) == (split == "validation")) + "\n"


@functools.lru_cache(maxsize=8)
def _corpus_ids(split: str, id_every: int, id_length: int) -> np.ndarray:
    """The split's class indices ``[N]``, with ID tags (digits as ``_ID_SLOT``) when ``id_every > 0``."""
    text = corpus_text(split)
    if id_every == 0:
        return encode(text)
    pieces: list[np.ndarray] = []
    tag = (encode("<id>"), np.full(id_length, _ID_SLOT, np.int64), encode("</id>\n"))
    start = 0
    while start < len(text):
        cut = text.find("\n", start + id_every - 1)
        end = len(text) if cut < 0 else cut + 1
        pieces.append(encode(text[start:end]))
        if cut >= 0:
            pieces.extend(tag)
        start = end
    return np.concatenate(pieces)


@dataclass(frozen=True)
class TextTask:
    """Next-character prediction on Python's own documentation (module docstring).

    Options: ``window`` T (characters per window), ``split`` (``train`` or ``validation``),
    ``id_every`` (insert a random ID tag about every this many characters; 0: none) and
    ``id_length`` (digits per ID).
    """

    window: int = 100
    split: str = "train"
    id_every: int = 0
    id_length: int = 8

    name: ClassVar[str] = "text"
    env_id: ClassVar[str] = "heed/Text-v0"
    loss: ClassVar[str] = "classes"
    input_size: ClassVar[int] = len(VOCAB)
    output_size: ClassVar[int] = len(VOCAB)
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {
        "window": (1, MAX_LENGTH), "id_every": (0, 1_000_000), "id_length": (1, 64)}

    def __post_init__(self) -> None:
        check_options(self.name, {k: getattr(self, k) for k in self.option_ranges}, self.option_ranges)
        require(self.split in SPLITS, f"task 'text': split must be one of {', '.join(SPLITS)}, got '{self.split}'")
        require(len(self.ids) > self.window, f"task 'text': window {self.window} is longer than the "
                f"'{self.split}' text ({len(self.ids)} characters)")

    def held_out(self) -> TextTask:
        """The same task on the validation paragraphs (what a trainer evaluates on)."""
        return dataclasses.replace(self, split="validation")

    @property
    def ids(self) -> np.ndarray:
        """The split's characters as class indices ``[N]`` (ID digits as -1 until sampled)."""
        return _corpus_ids(self.split, self.id_every, self.id_length)

    def windows(self, starts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The windows ``c_s .. c_{s+T}`` ``[B, T + 1]`` int64 at ``starts [B]``, ID digits drawn from ``rng``."""
        chars = self.ids[starts[:, None] + np.arange(self.window + 1)]  # [B, T+1]
        slots = chars == _ID_SLOT
        if slots.any():
            chars = chars.copy()
            chars[slots] = CHAR_INDEX["0"] + rng.integers(0, 10, int(slots.sum()))
        return chars

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        starts = rng.integers(0, len(self.ids) - self.window, batch_size)
        chars = self.windows(starts, rng)
        return Batch(one_hot(chars[:, :-1]), chars[:, 1:].copy(), np.ones((batch_size, self.window), np.float32))


def one_hot(ids: np.ndarray) -> np.ndarray:
    """One-hot inputs ``[..., V]`` float32 of class indices ``[...]``."""
    out = np.zeros((*ids.shape, len(VOCAB)), np.float32)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out
