"""Attention of character language models over a held-out passage (issue 18): the SHA-RNN's head
(one, or one per block) and every head of every layer of the causal Transformer.

    heed text-attention --checkpoints runs/text-sha-rnn runs/text-transformer --out-dir docs/figures/language

The passage is ``--chars`` characters of the held-out ``validation`` split of the task ``text``,
starting at the first occurrence of ``--start`` (default: a sentence that says "assignment" twice, so
a head that looks back at the earlier copy of a word shows as an off-diagonal streak). Each
checkpoint reads it from a fresh state and writes ``NAME_attention.png``: one heat map per head,
query character t down, key character j across (both labelled with the characters), weight
``a_tj`` (rows sum to 1; the causal mask leaves the upper triangle empty). Also printed and returned
per head: the mean look-back ``sum_j a_tj (t - j)`` in characters, averaged over the queries.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, validate
from heed.agents.trainers import sequence_utils as su
from heed.envs.text import TextTask, corpus_text, encode, one_hot


@dataclass(frozen=True)
class Config:
    """Draw the attention of text models over one held-out passage."""

    checkpoints: tuple[Path, ...] = ()
    """run dirs or checkpoint dirs of supervised runs on the text task (SHA-RNN or Transformer)"""
    out_dir: Path = Path("figures")
    """where NAME_attention.png go"""
    start: str = "Augmented assignment is"
    """the passage starts at the first occurrence of this string in the validation text"""
    chars: Annotated[int, Range(2, 4096)] = 100
    """passage length (at most each run's training window)"""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


def passage(start: str, chars: int) -> str:
    """``chars`` characters of the validation text from the first occurrence of ``start``."""
    text = corpus_text("validation")
    at = text.find(start)
    require(at >= 0, f"--start {start!r} does not occur in the validation text")
    require(at + chars <= len(text), f"--chars {chars}: the validation text ends {len(text) - at} characters after --start")
    return text[at:at + chars]


def heads_of(attention: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every head's weights ``[T, T]`` of one sequence, by a readable name.

    ``attention [1, L, H, T, T]`` (Transformer) gives ``layer l head h``; ``layer_attention
    [1, T, L, T]`` (SHA-RNN with a head per block) gives ``block l``; ``attention [1, T, T]`` alone
    (one SHA-RNN head) gives ``head``.
    """
    weights = attention.get("attention")
    require(weights is not None, "this model records no attention (an LSTM or ACT run?)")
    if weights.dim() == 5:
        return {f"layer {i} head {h}": weights[0, i, h] for i in range(weights.shape[1]) for h in range(weights.shape[2])}
    if "layer_attention" in attention:
        per_block = attention["layer_attention"][0]  # [T, L, T]
        return {f"block {i}": per_block[:, i] for i in range(per_block.shape[1])}
    require(weights.dim() == 3, f"attention of shape {tuple(weights.shape)} is not one of the text models'")
    return {"head": weights[0]}


def mean_look_back(weights: torch.Tensor) -> float:
    """``mean_t sum_j a_tj (t - j)`` of ``weights [T, T]``: how far back a head reads, in characters."""
    steps = weights.shape[0]
    gap = torch.arange(steps)[:, None] - torch.arange(steps)[None, :]  # t - j
    return float((weights * gap).sum(-1).mean())


def draw(text: str, heads: dict[str, np.ndarray], title: str, path: Path) -> None:
    """One heat map per head over the passage's characters (query down, key across)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(heads))
    rows = -(-len(heads) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), dpi=150, squeeze=False)
    ticks = ["\u21b5" if c == "\n" else ("\u2423" if c == " " else c) for c in text]
    for ax, (name, weights) in zip(axes.flat, heads.items()):
        ax.imshow(weights, cmap="viridis", vmin=0, vmax=max(float(weights.max()), 1e-6), interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks(range(len(text)), ticks, fontsize=3, family="monospace")
        ax.set_yticks(range(len(text)), ticks, fontsize=3, family="monospace")
        ax.set_xlabel("key (read) character", fontsize=7)
        ax.set_ylabel("query (current) character", fontsize=7)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(cfg: Config) -> dict[str, dict[str, float]]:
    """Write one figure per checkpoint; return ``{figure name: {head: mean look-back}}``."""
    validate(cfg)
    if not cfg.checkpoints:
        raise HeedError("give --checkpoints RUN [RUN ...] (SHA-RNN or Transformer runs on the text task)")
    text = passage(cfg.start, cfg.chars)
    loaded = []
    for path in cfg.checkpoints:  # every checkpoint is checked before anything is written
        model, task, ckpt = su.load_sequence_model(str(path))
        if not isinstance(task, TextTask):
            raise HeedError(f"checkpoint '{ckpt.path}' was trained on task '{ckpt.meta['task']}', not 'text'")
        require(cfg.chars <= task.window, f"--chars {cfg.chars} is longer than '{path}''s training window ({task.window})")
        loaded.append((model, ckpt))
    folder = OutputFolder(cfg.out_dir, cfg.overwrite)
    names = [str(ckpt.meta["model"]["name"]) for _, ckpt in loaded]
    outputs = {}
    for (model, ckpt), name in zip(loaded, names):
        stem = name if names.count(name) == 1 else f"{name}_{Path(ckpt.path).parent.parent.name}"
        out = folder.claim(f"{stem}_attention.png")
        with torch.no_grad():
            _, attention, _ = model(torch.as_tensor(one_hot(np.asarray(encode(text))))[None])
        heads = heads_of(attention)
        outputs[stem] = {head: mean_look_back(w) for head, w in heads.items()}
        with disk_errors(cfg.out_dir):
            draw(text, {h: w.numpy() for h, w in heads.items()}, f"{name}: attention over a held-out passage", out)
        look = ", ".join(f"{h} {v:.1f}" for h, v in outputs[stem].items())
        print(f"{out}: mean look-back in characters: {look}")
    return outputs


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, args=sys.argv[1:], prog="heed text-attention", description=__doc__)))
