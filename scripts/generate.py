"""Write text with a character language model trained on the ``text`` task, from a prompt.

    python scripts/generate.py --checkpoint runs/text-lstm --prompt "The for statement" --length 300

``--checkpoint`` takes a supervised run dir (its latest checkpoint) or a checkpoint dir: an LSTM, the
SHA-RNN, ACT or the causal Transformer (``model:transformer --model.causal``). Each next character is
drawn from ``softmax(logits / temperature)`` restricted to the ``--top-k`` most likely characters (0:
all) and then to the nucleus, the fewest most likely characters whose probability sums to at least
``--top-p`` (1: all; Holtzman et al. 2020); ``--temperature 0`` is greedy decoding (argmax). Each
character is drawn after the model has read the last ``--context`` characters (default: the run's
training window, the length it has learned to read). The causal Transformer and the SHA-RNN keep a
cache (:mod:`heed.agents.kv_cache`: the Transformer's keys and values, the SHA-RNN's LSTM states and
head keys), so while the text fits in the window each new character is read once; past the window
they re-read the last ``context`` characters for every new one (the same text as ``--no-cache``),
unless ``--stream``: a rotary Transformer then attends over a rolling window of the last ``context``
keys and values and the SHA-RNN's LSTM runs on (faster; no longer what the model saw in training;
learned and sinusoid positions cannot roll and re-read). Other models (LSTM, ACT) re-read the window
from a fresh state for every character. ``--bpc-chars N`` first prints the model's bits per character
on N characters of the held-out ``validation`` split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch import nn

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.validate import NonNegative, Range, SeedRange, validate
from heed.agents.kv_cache import CachedReader
from heed.agents.trainers import sequence_utils as su
from heed.envs.text import TextTask, decode, encode, one_hot


@dataclass(frozen=True)
class Config:
    """Sample text from a character language model."""

    checkpoint: Path
    """run dir or checkpoint dir of a supervised run on the text task"""
    prompt: str = "The "
    """the text to continue (newline and printable ASCII)"""
    length: Annotated[int, Range(0, 10_000)] = 300
    """characters to write after the prompt"""
    temperature: Annotated[float, NonNegative] = 0.8
    """softmax temperature; 0 is greedy decoding"""
    top_k: Annotated[int, Range(0, 4096)] = 0
    """sample among the k most likely characters only (0: all)"""
    top_p: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    """nucleus sampling: among the fewest most likely characters whose probability sums to >= p (1: all)"""
    context: Annotated[int, Range(0, 100_000)] = 0
    """characters the model re-reads before writing each one (0: the run's training window)"""
    cache: bool = True
    """read each new character once, keeping the keys/values or states of those before (Transformer,
    SHA-RNN); --no-cache re-reads the window for every character (the same text, slower)"""
    stream: bool = False
    """past --context characters keep going from the cache (rotary Transformer: a rolling window; SHA-RNN:
    the LSTM runs on) instead of re-reading the last --context characters for each new one"""
    seed: Annotated[int, SeedRange] = 0
    """sampling seed"""
    bpc_chars: Annotated[int, Range(0, 10_000_000)] = 0
    """first report bits per character on this many held-out (validation) characters (0: skip)"""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads"""


def next_char(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator,
              top_p: float = 1.0) -> int:
    """One class index from ``logits [K]``: argmax when ``temperature == 0``, else a draw from
    ``p = softmax(logits / temperature)`` over the ``top_k`` largest logits (all when ``top_k == 0``),
    then over the nucleus: the fewest classes, most likely first, whose ``p`` sums to ``>= top_p``
    (renormalised)."""
    if temperature == 0:
        return int(logits.argmax())
    scaled = logits.double() / temperature
    if 0 < top_k < scaled.numel():
        threshold = scaled.topk(top_k).values[-1]
        scaled = scaled.masked_fill(scaled < threshold, -math.inf)
    probs = torch.softmax(scaled - scaled.max(), dim=-1)
    if top_p < 1.0:
        ranked, order = probs.sort(descending=True)
        before = ranked.cumsum(0) - ranked  # probability of the classes ranked above each one
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[order] = before < top_p  # the most likely class is always kept
        probs = probs * keep
    return int(torch.multinomial(probs, 1, generator=generator))


def _one_hot(ids: Sequence[int]) -> torch.Tensor:
    """Character ids ``[T]`` as the model's inputs ``[1, T, V]``."""
    return torch.as_tensor(one_hot(np.asarray(ids)))[None]


@torch.no_grad()
def generate(model: nn.Module, prompt: str, length: int, temperature: float = 1.0, top_k: int = 0,
             seed: int = 0, top_p: float = 1.0, context: int | None = None, cache: bool = True,
             stream: bool = False) -> str:
    """``prompt`` followed by ``length`` characters written by ``model`` (a ``[B, T, V] -> [B, T, V]``
    character model), each from its logits after reading the last ``context`` characters (None: all),
    through :class:`~heed.agents.kv_cache.CachedReader` (``cache``, ``stream``: its docstring); a
    prompt character outside the vocabulary is a :class:`HeedError`."""
    if not prompt:
        raise HeedError("--prompt must not be empty: the model needs a first character")
    ids = list(encode(prompt))
    generator = torch.Generator().manual_seed(seed)
    reader = CachedReader(model, _one_hot, context, cache=cache, stream=stream)
    for _ in range(length):
        ids.append(next_char(reader(ids), temperature, top_k, generator, top_p))
    return decode(ids)


def held_out_bpc(model: nn.Module, task: TextTask, chars: int, seed: int = 0) -> float:
    """Bits per character on about ``chars`` characters of the validation split (windows of the task's length)."""
    held_out = TextTask(window=task.window, split="validation", id_every=task.id_every, id_length=task.id_length)
    windows = max(1, chars // held_out.window)
    result = su.evaluate(model, held_out, su.fixed_batches(held_out, windows, 32, seed))
    return result["bits_per_step"]


def main(cfg: Config) -> str:
    """Print (and return) the prompt and its continuation."""
    validate(cfg)
    torch.set_num_threads(cfg.threads)
    model, task, ckpt = su.load_sequence_model(str(cfg.checkpoint))
    if not isinstance(task, TextTask):
        raise HeedError(f"checkpoint '{ckpt.path}' was trained on task '{ckpt.meta['task']}', not 'text'")
    encode(cfg.prompt)  # refuse a bad prompt before any work
    if cfg.bpc_chars:
        print(f"validation bits per character: {held_out_bpc(model, task, cfg.bpc_chars, cfg.seed):.4f}")
    text = generate(model, cfg.prompt, cfg.length, cfg.temperature, cfg.top_k, cfg.seed, cfg.top_p,
                    cfg.context or task.window, cache=cfg.cache, stream=cfg.stream)
    print(text)
    return text


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="generate.py", description=__doc__)))
