"""The attentive reader's attention over a bAbI story: the heat map for one question, and the share of
attention on the supporting facts over held-out questions.

    python scripts/reader_attention.py --run runs/reader/babi1-words --out docs/figures/babi_reader_attention.png

Reads a run of ``heed train supervised --task babi ... model:reader``. For each of ``--questions``
held-out stories (seed ``--seed``) it takes the attention row of the question step (the reader's
``attention[b, L - 1]``) and sums it over the steps of the supporting facts (their words with
``encoding=words``, their sentences with ``encoding=facts``). Chance is the same sum under uniform
attention over the story steps. Writes the figure of the first question (story steps across, the
supporting fact's answer word circled) and prints a JSON summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from heed.agents.common.validate import Range, SeedRange
from heed.envs.babi import BabiTask, sentences, tokenize


@dataclass(frozen=True)
class Config:
    """Heat map and supporting-fact attention share of a trained attentive reader on bAbI."""

    run: Path
    """run folder (or checkpoint) of heed train supervised --task babi ... model:reader"""
    out: Path = Path("babi_reader_attention.png")
    """where to write the heat map of the first held-out question"""
    questions: Annotated[int, Range(1, 100_000)] = 200
    """held-out questions measured"""
    seed: Annotated[int, SeedRange] = 12345
    """seed of the held-out stories (training uses the run's own stream)"""


def step_sentences(task: BabiTask, qa) -> tuple[list[str], list[int]]:
    """Labels of the story steps (all steps but the final query step) and the sentence index of each."""
    said = sentences(qa)[:-1] if task.encoding == "facts" else sentences(qa)
    if task.encoding == "facts":
        return said, list(range(len(said)))
    labels, owner = [], []
    for i, sentence in enumerate(said):
        words = tokenize(sentence)
        labels += words
        owner += [i] * len(words)
    return labels, owner  # the final <answer> token is the query step and is left out


def story_figure(qa, task: BabiTask, labels: list[str], owner: list[int], weights: np.ndarray, path: Path) -> None:
    """The story one sentence per line, each word on a grey the darker the more attention its step got
    (a sentence's words share its weight with ``encoding=facts``); supporting lines marked with ``*``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    said = sentences(qa)
    lines = sorted(qa.facts)
    words = [tokenize(s) for s in said]
    top = max(float(weights.max()), 1e-9)
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * (len(said) + 2) + 0.6))
    ax.axis("off")
    ax.set_xlim(0, 1)
    ax.set_ylim(len(said) + 1.5, -0.5)
    cell = 0.105
    for i, ws in enumerate(words):
        steps = [j for j, o in enumerate(owner) if o == i]
        mark = "*" if i < len(lines) and lines[i] in qa.supports else " "
        ax.text(0.0, i, mark, fontsize=9, va="center", family="monospace")
        for k, w in enumerate(ws):
            weight = float(weights[steps[k] if task.encoding == "words" else steps[0]]) if steps else 0.0
            shade = 1.0 - 0.85 * weight / top
            ax.text(0.03 + k * cell, i, w, fontsize=8, va="center", family="monospace",
                    color="white" if shade < 0.5 else "black",
                    bbox={"facecolor": str(shade), "edgecolor": "none", "pad": 1.5})
    ax.text(0.0, len(said) + 0.8, f"answer: {qa.answer}   (darker = more attention; max {top:.2f}; * supporting fact)",
            fontsize=7, va="center")
    ax.set_title(f"attentive reader ({task.encoding} encoding): attention from the question over the story", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(cfg: Config) -> dict:
    """Measure, draw, print the summary."""
    from heed.agents.common.errors import HeedError
    from heed.agents.reader import AttentiveReader
    from heed.agents.trainers.sequence_utils import load_sequence_model

    torch.set_num_threads(1)
    model, task, _ = load_sequence_model(str(cfg.run))
    if not isinstance(model, AttentiveReader) or not isinstance(task, BabiTask):
        raise HeedError(f"'{cfg.run}' is not a run of model:reader on --task babi")
    # the same generator stream twice: the QA objects (for the supporting lines) and the batch the task lays out
    rng_qa, rng_batch = np.random.default_rng(cfg.seed), np.random.default_rng(cfg.seed)
    qas = [task.sample_qa(rng_qa) for _ in range(cfg.questions)]
    batch = task.sample(cfg.questions, rng_batch)
    with torch.no_grad():
        logits, attention, _ = model(torch.as_tensor(batch.inputs))
    last = batch.mask.argmax(1)
    rows = np.arange(cfg.questions)
    alpha = attention["attention"][rows, last].numpy()  # [N, T]
    correct = (logits[rows, last].argmax(-1).numpy() == batch.targets[rows, last]).mean()
    shares, chance = [], []
    for b, qa in enumerate(qas):
        labels, owner = step_sentences(task, qa)
        assert len(labels) == last[b], "the QA stream and the batch differ"
        lines = sorted(qa.facts)
        support = np.array([o < len(lines) and lines[o] in qa.supports for o in owner])
        shares.append(float(alpha[b, : len(labels)][support].sum()))
        chance.append(float(support.mean()))
    labels, owner = step_sentences(task, qas[0])
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    story_figure(qas[0], task, labels, owner, alpha[0, : len(labels)], cfg.out)
    summary = {"run": str(cfg.run), "encoding": task.encoding, "questions": cfg.questions,
               "accuracy": float(correct), "support_share": float(np.mean(shares)),
               "chance_share": float(np.mean(chance)), "figure": str(cfg.out)}
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    from heed.agents.common.cli import parse_config
    from heed.agents.common.errors import cli_main

    cli_main(lambda: main(parse_config(Config, prog="reader_attention.py", description=__doc__)))
