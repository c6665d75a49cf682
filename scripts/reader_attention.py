"""The attentive reader's attention over a story: the heat map for one question, and the share of
attention on the supporting facts over held-out questions.

    python scripts/reader_attention.py --run runs/reader/babi1-words --out docs/figures/babi_reader_attention.png

Reads a run of ``heed train supervised --task babi ... model:reader`` or ``--task cloze ...
model:reader`` (:mod:`heed.envs.cloze`). For each of ``--questions`` held-out stories (seed
``--seed``) it takes the attention row of the question step (the reader's ``attention[b, L - 1]``)
and sums it over the steps of the supporting facts (bAbI: their words with ``encoding=words``, their
sentences with ``encoding=facts``; cloze: the words of the sentence the query restates). Chance is
the same sum under uniform attention over the attended steps. For cloze also ``answer_share``, the
attention on the document's occurrences of the answer's marker (chance ``answer_chance``). Writes the
figure of the first question (one sentence per line, each word shaded by its attention, supporting
lines marked ``*``) and prints a JSON summary.
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
    """run folder (or checkpoint) of heed train supervised --task babi|cloze ... model:reader"""
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


def words_figure(
    lines: list[list[str]], weights: list[list[float]], marks: list[str], footer: str, title: str, path: Path
) -> None:
    """Words one line per sentence, each on a grey the darker the more attention it got.

    Args: ``lines[i]`` the words of line i, ``weights[i]`` their attention (same lengths), ``marks[i]``
    one character drawn before line i (``*``: a supporting line).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max([w for ws in weights for w in ws] + [1e-9])
    longest = max(len(ws) for ws in lines)
    per_word = max(0.68, 0.07 * max(len(w) for ws in lines for w in ws) + 0.15)  # inches, 8 pt monospace
    width = max(6.5, per_word * longest + 0.6)
    fig, ax = plt.subplots(figsize=(width, 0.32 * (len(lines) + 2) + 0.6))
    ax.axis("off")
    ax.set_xlim(0, 1)
    ax.set_ylim(len(lines) + 1.5, -0.5)
    cell = per_word / width
    for i, (ws, shades) in enumerate(zip(lines, weights)):
        ax.text(0.0, i, marks[i], fontsize=9, va="center", family="monospace")
        for k, (w, weight) in enumerate(zip(ws, shades)):
            shade = 1.0 - 0.85 * weight / top
            ax.text(0.03 + k * cell, i, w, fontsize=8, va="center", family="monospace",
                    color="white" if shade < 0.5 else "black",
                    bbox={"facecolor": str(shade), "edgecolor": "none", "pad": 1.5})
    ax.text(0.0, len(lines) + 0.8, f"{footer}   (darker = more attention; max {top:.2f}; * supporting fact)",
            fontsize=7, va="center")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def story_figure(qa, task: BabiTask, labels: list[str], owner: list[int], weights: np.ndarray, path: Path) -> None:
    """A bAbI story for :func:`words_figure` (a sentence's words share its weight with ``encoding=facts``)."""
    said = sentences(qa)
    lines = sorted(qa.facts)
    words = [tokenize(s) for s in said]
    shades = []
    for i, ws in enumerate(words):
        steps = [j for j, o in enumerate(owner) if o == i]
        shades.append([float(weights[steps[k] if task.encoding == "words" else steps[0]]) if steps else 0.0
                       for k in range(len(ws))])
    marks = ["*" if i < len(lines) and lines[i] in qa.supports else " " for i in range(len(said))]
    title = f"attentive reader ({task.encoding} encoding): attention from the question over the story"
    words_figure(words, shades, marks, f"answer: {qa.answer}", title, path)


def answer_step(model, batch) -> tuple[np.ndarray, float, np.ndarray]:
    """The reader on a laid-out batch, read at each story's one scored (answer) step: its attention
    over the story ``alpha [N, T]``, the accuracy there, and the answer step per story ``[N]``."""
    with torch.no_grad():
        logits, attention, _ = model(torch.as_tensor(batch.inputs))
    last = batch.mask.argmax(1)
    rows = np.arange(len(last))
    alpha = attention["attention"][rows, last].numpy()  # [N, T]
    correct = float((logits[rows, last].argmax(-1).numpy() == batch.targets[rows, last]).mean())
    return alpha, correct, last


def cloze_measure(model, task, cfg: Config) -> tuple[dict, tuple]:
    """Accuracy and attention shares of a reader on ``cfg.questions`` cloze stories; the first story's figure data."""
    from heed.envs.cloze import QUERY_TOKEN

    rng_story, rng_batch = np.random.default_rng(cfg.seed), np.random.default_rng(cfg.seed)
    stories = [task.sample_story(rng_story) for _ in range(cfg.questions)]
    batch = task.sample(cfg.questions, rng_batch)  # the same stories, laid out
    alpha, correct, last = answer_step(model, batch)
    support, support_chance, answer, answer_chance = [], [], [], []
    for b, story in enumerate(stories):
        words = task.words(story)[:-1]  # the attended steps: document, <query>, query
        assert len(words) == last[b], "the story stream and the batch differ"
        n = len(story.document)
        on_support = np.array([o == story.support for o in story.sentence_of_word] + [False] * (len(words) - n))
        on_answer = np.array([w == story.answer for w in story.document] + [False] * (len(words) - n))
        support.append(float(alpha[b, : len(words)][on_support].sum()))
        answer.append(float(alpha[b, : len(words)][on_answer].sum()))
        support_chance.append(float(on_support.mean()))
        answer_chance.append(float(on_answer.mean()))
    first = stories[0]
    weights = alpha[0]
    lines, shades, marks, k = [], [], [], 0
    for i in range(max(first.sentence_of_word) + 1):
        ws = [w for w, o in zip(first.document, first.sentence_of_word) if o == i]
        lines.append(ws)
        shades.append([float(x) for x in weights[k : k + len(ws)]])
        marks.append("*" if i == first.support else " ")
        k += len(ws)
    lines.append([QUERY_TOKEN, *first.query])
    shades.append([float(x) for x in weights[k : k + 1 + len(first.query)]])
    marks.append("?")
    measures = {"accuracy": float(correct), "support_share": float(np.mean(support)),
                "chance_share": float(np.mean(support_chance)), "answer_share": float(np.mean(answer)),
                "answer_chance": float(np.mean(answer_chance))}
    title = f"attentive reader ({model.cfg.attention} attention) on an anonymised cloze story: attention from the query"
    return measures, (lines, shades, marks, f"answer: {first.answer}", title)


def main(cfg: Config) -> dict:
    """Measure, draw, print the summary."""
    from heed.agents.common.errors import HeedError
    from heed.agents.reader import AttentiveReader
    from heed.agents.trainers.sequence_utils import load_sequence_model
    from heed.envs.cloze import ClozeTask

    torch.set_num_threads(1)
    model, task, _ = load_sequence_model(str(cfg.run))
    if not isinstance(model, AttentiveReader) or not isinstance(task, (BabiTask, ClozeTask)):
        raise HeedError(f"'{cfg.run}' is not a run of model:reader on --task babi or --task cloze")
    if isinstance(task, ClozeTask):
        measures, figure = cloze_measure(model, task, cfg)
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        words_figure(*figure, cfg.out)
        summary = {"run": str(cfg.run), "task": "cloze", "attention": model.cfg.attention,
                   "questions": cfg.questions, **measures, "figure": str(cfg.out)}
        print(json.dumps(summary, indent=1))
        return summary
    # the same generator stream twice: the QA objects (for the supporting lines) and the batch the task lays out
    rng_qa, rng_batch = np.random.default_rng(cfg.seed), np.random.default_rng(cfg.seed)
    qas = [task.sample_qa(rng_qa) for _ in range(cfg.questions)]
    batch = task.sample(cfg.questions, rng_batch)
    alpha, correct, last = answer_step(model, batch)
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
    summary = {"run": str(cfg.run), "task": "babi", "encoding": task.encoding, "questions": cfg.questions,
               "accuracy": float(correct), "support_share": float(np.mean(shares)),
               "chance_share": float(np.mean(chance)), "figure": str(cfg.out)}
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    from heed.agents.common.cli import parse_config
    from heed.agents.common.errors import cli_main

    cli_main(lambda: main(parse_config(Config, prog="reader_attention.py", description=__doc__)))
