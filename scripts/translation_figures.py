"""Figures and numbers of trained encoder-decoders on the translation-like tasks (Bahdanau et al. 2014).

Example (the runs of ``heed sweep ... --grid "model:rnnencdec | model:rnnsearch"``, docs/translation.md)::

    heed translation-figures --runs runs/sweeps/translation --out-dir docs/figures/translation

``--runs`` takes run folders of ``heed train supervised`` or folders holding them (a sweep). On
``--sentences`` held-out sentences (the task's ``split="test"``, never trained on) every run is
decoded (greedily, or by beam search with ``--beam K``) and scored (exact match and BLEU, overall and by source length); the teacher-forced
attention of each attentive run and the gradient map of every run (``|| d log p(y_i) / d x_j ||``,
the sequential Jacobian of :mod:`heed.analysis.sequential` restricted to decoder rows and source
columns, rows normalised to sum to 1) are scored against the grammar's alignment: the share of each
row on the aligned source word (for gradient maps also over the reordered words alone,
``gradient_share_moved``: target word i aligned to a source word j != i). Writes into ``--out-dir``:

- ``alignment.png``: the first attentive run's attention, target words x source words, on the
  lecture-style sentence below (circles: the grammar's alignment); ``alignment_LABEL.png`` that of
  the first run of every other attention kind (``alignment_rnnsearch-dot.png``,
  ``alignment_rnnsearch-key-value.png``);
- ``implicit.png``: the gradient map of the first RNNencdec run on the same sentence, and
  ``NAME_implicit.png`` that of the first run of every other model without attention
  (``bytenet_implicit.png``: :mod:`heed.agents.bytenet`);
- ``length_bleu.png``, ``length_exact.png``: BLEU / exact match against source length per model;
- ``alignment.gif`` (with ``--video``): the alignment of the first attentive run as its decoder
  writes the lecture-style sentence (its own output, not the reference), one frame per output word;
- ``alignment_chars.png``: when that run is at character level (``--task-options level=char``), its
  attention over characters; ``alignment.png`` (and every share) then holds the map summed to words
  (:func:`heed.analysis.translation.to_words`), as do the gradient maps of character-level runs;
- ``summary.json``: every number, per run; a Markdown table is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from heed.agents.common.validate import Range, SeedRange

#: the lecture's kind of sentence: a verb-final infinitive ("to reach ... zu erreichen") and a subordinate clause
LECTURE_SOURCE = (
    "Nawaz tries to reach the official residence of Sharif because the old minister sees a new car ."
)
LECTURE_TARGET = "Nawaz versucht die offizielle Residenz des Sharif zu erreichen weil der alte Minister ein neuer Wagen sieht ."
LECTURE_ALIGNMENT = (0, 1, 4, 5, 6, 7, 8, 2, 3, 9, 10, 11, 12, 14, 15, 16, 13, 17)
LENGTH_EDGES = (3, 10, 20, 30, 40, 50, 61)


@dataclass(frozen=True)
class Config:
    """Alignment, implicit-attention and length figures of trained encoder-decoders."""

    runs: tuple[Path, ...] = field(default_factory=tuple)
    """run folders of heed train supervised (model:rnnencdec / rnnsearch / bytenet), or folders holding them"""
    out_dir: Path = Path("translation_figures")
    """where to write the figures and summary.json"""
    sentences: Annotated[int, Range(1, 100_000)] = 600
    """held-out sentences decoded per run"""
    beam: Annotated[int, Range(1, 64)] = 1
    """beam width of the decoding (1: greedy); hypotheses ranked by length-normalised log-probability"""
    video: bool = False
    """also write alignment.gif: the attention as the decoder writes the lecture-style sentence"""
    video_fps: Annotated[float, Range(0.1, 30.0)] = 1.5
    """frames (output words) per second of alignment.gif"""
    gradient_sentences: Annotated[int, Range(0, 10_000)] = 48
    """held-out sentences whose gradient maps are scored per run (0: skip)"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the held-out sentences"""
    threads: Annotated[int, Range(0, 1024)] = 1
    """torch CPU threads (0: leave torch's default)"""
    overwrite: bool = False
    """let outputs replace files in --out-dir that heed did not write"""


def find_runs(paths: tuple[Path, ...]) -> list[Path]:
    """Run folders (holding ``config.json`` and ``checkpoints/``) among ``paths`` and their children."""
    from heed.agents.common.errors import HeedError

    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise HeedError(f"--runs '{path}' is not a folder")
        found += (
            [path]
            if (path / "config.json").is_file()
            else sorted(p for p in path.iterdir() if p.is_dir() and (p / "config.json").is_file())
        )
    if not found:
        raise HeedError(
            f"no run folders (with config.json) in --runs {' '.join(map(str, paths)) or '(none given)'}"
        )
    return found


def model_label(cfg) -> str:
    kind = getattr(cfg, "attention", None)
    return cfg.name if kind in (None, "additive") else f"{cfg.name}-{kind}"


def implicit_name(cfg) -> str:
    """The gradient-map figure of a model without attention: ``implicit.png`` (RNNencdec), else ``NAME_implicit.png``."""
    return "implicit.png" if cfg.name == "rnnencdec" else f"{cfg.name}_implicit.png"


def gradient_maps(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``G[b, t, s] = || d log p(y_t) / d x_s ||`` ``[B, T, T]`` through :func:`sensitivity_matrix`,
    for the teacher-forced reference classes ``targets [B, T]``."""
    from heed.analysis.sequential import sensitivity_matrix

    def log_prob(x: torch.Tensor) -> torch.Tensor:  # [B, T, 1]
        return torch.log_softmax(model(x)[0], -1).gather(-1, targets[..., None])

    return sensitivity_matrix(log_prob, inputs, mode="reverse")


def decode(model, inputs: torch.Tensor, width: int, max_len: int):
    """``(classes [B, L], alignment [B, L, S] or None)``: greedy for ``width == 1``, else beam search."""
    if width == 1:
        return model.greedy(inputs, max_len=max_len)
    return model.beam(inputs, width=width, max_len=max_len)


def word_map(weights: np.ndarray, pair) -> np.ndarray:
    """A token map ``[L_target, S]`` of ``pair`` as a word map (the identity at word level)."""
    from heed.analysis.translation import to_words
    from heed.envs.translation import token_words

    if not pair.source_words:
        return np.asarray(weights)[: len(pair.target), : len(pair.source)]
    source_words, target_words = token_words(pair)
    return to_words(weights, target_words, source_words)


def score_run(model, task, pairs, gradient_count: int, beam: int = 1) -> dict:
    """Exact match / BLEU (greedy or beam ``beam``) (overall and by length), attention and gradient alignment shares.

    Everything is on words at either level: hypotheses through ``task.target_words``, lengths in
    source words, maps over characters summed to words (:func:`word_map`) before they are scored.
    """
    from heed.analysis.translation import alignment_share, bleu, by_length
    from heed.envs.translation import encode_pairs

    vs, k = len(task.source_vocab), task.output_size
    hyps, refs, attn_share, grad_share, moved_share, chance = [], [], [], [], [], []
    for start in range(0, len(pairs), 50):
        chunk = pairs[start : start + 50]
        batch = encode_pairs(chunk, vs, k)
        inputs = torch.from_numpy(batch.inputs)
        s = max(len(p.source) for p in chunk)
        classes, _ = decode(model, inputs, beam, max(len(p.target) for p in chunk) + 10)
        for row, pair in zip(classes.tolist(), chunk):
            hyps.append(task.target_words(row[: row.index(0)] if 0 in row else row))
            refs.append(task.target_words(pair.target))
        with torch.no_grad():
            attention = model(inputs)[1].get("alignment")
        for b, pair in enumerate(chunk):
            chance.append(1.0 / len(task.words(pair)[0]))
            if attention is not None:
                weights = word_map(attention[b, s : s + len(pair.target)].numpy(), pair)
                attn_share.append(alignment_share(weights, pair.alignment))
        if start < gradient_count:
            few = chunk[: gradient_count - start]
            grads = gradient_maps(model, inputs[: len(few)], torch.from_numpy(batch.targets[: len(few)]))
            for b, pair in enumerate(few):
                rows = word_map(grads[b, s : s + len(pair.target), : len(pair.source)].numpy(), pair)
                rows = rows / rows.sum(1, keepdims=True).clip(1e-12)
                grad_share.append(alignment_share(rows, pair.alignment))
                moved = [j if j != i else -1 for i, j in enumerate(pair.alignment)]  # reordered words only
                moved_share.append(alignment_share(rows, moved))
    lengths = [len(task.words(p)[0]) for p in pairs]
    return {
        "decoding": "greedy" if beam == 1 else f"beam {beam}",
        "exact": 100.0 * float(np.mean([h == r for h, r in zip(hyps, refs)])),
        "bleu": bleu(hyps, refs),
        "by_length": by_length(hyps, refs, lengths, LENGTH_EDGES),
        "attention_share": float(np.mean(attn_share)) if attn_share else None,
        "gradient_share": float(np.mean(grad_share)) if grad_share else None,
        "gradient_share_moved": float(np.nanmean(moved_share)) if np.isfinite(moved_share).any() else None,
        "chance_share": float(np.mean(chance)),
    }


def lecture_pair(task):
    """The lecture-style sentence as a :class:`~heed.envs.translation.Pair` of ``task`` (at its level)."""
    return task.pair_of(LECTURE_SOURCE.split(), LECTURE_TARGET.split(), LECTURE_ALIGNMENT)


def sentence_maps(model, task) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """On the lecture sentence: the attention summed to words ``[L_target, S]`` (or None), the
    row-normalised gradient map summed to words, and the attention over tokens (characters at
    character level; None at word level or without attention)."""
    from heed.envs.translation import encode_pairs

    pair = lecture_pair(task)
    batch = encode_pairs([pair], len(task.source_vocab), task.output_size)
    inputs, s, m = torch.from_numpy(batch.inputs), len(pair.source), len(pair.target)
    with torch.no_grad():
        attention = model(inputs)[1].get("alignment")
    grads = word_map(gradient_maps(model, inputs, torch.from_numpy(batch.targets))[0, s : s + m, :s].numpy(), pair)
    grads = grads / grads.sum(1, keepdims=True).clip(1e-12)
    if attention is None:
        return None, grads, None
    tokens = attention[0, s : s + m].numpy()
    return word_map(tokens, pair), grads, (tokens if pair.source_words else None)


def write_video_of(model, task, path: Path, width: int, fps: float, run: Path) -> float:
    """``alignment.gif``: the decoder's own alignment on the lecture sentence, one frame per output word;
    returns the share of attention on the grammar's aligned word (rows up to the shorter sentence)."""
    from heed.analysis.translation import alignment_frames, alignment_share
    from heed.analysis.video import write_video
    from heed.envs.translation import encode_pairs

    pair = lecture_pair(task)
    batch = encode_pairs([pair], len(task.source_vocab), task.output_size)
    classes, weights = decode(model, torch.from_numpy(batch.inputs), width, len(pair.target) + 10)
    row = classes[0].tolist()
    written = row[: row.index(0)] if 0 in row else row
    words = [task.target_vocab[c] for c in written] or ["</s>"]
    weights = weights[0, : len(words)].numpy()
    ok = written == list(pair.target)
    share = alignment_share(weights, LECTURE_ALIGNMENT)
    how = "greedy" if width == 1 else f"beam {width}"
    title = (
        f"{model_label(model.cfg)} attention while writing ({how}, "
        f"{'= reference' if ok else 'differs from reference'}), share on aligned word {share:.2f}\n{run}"
    )
    frames = alignment_frames(weights, LECTURE_SOURCE.split(), words, title, LECTURE_ALIGNMENT if ok else None)
    write_video(path, frames + frames[-1:] * 3, fps=fps)  # the finished map stays a little longer
    return share


def run(cfg: Config) -> dict:
    """Score every run and write the figures; returns the summary."""
    from heed.agents.common.errors import require
    from heed.agents.common.safe_io import OutputFolder, disk_errors, write_json_atomic
    from heed.agents.common.validate import validate
    from heed.agents.trainers.sequence_utils import build_task, load_sequence_model
    from heed.analysis.figures import save_figure
    from heed.analysis.translation import alignment_share, heatmap_figure, length_figure

    validate(cfg)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    loaded = []
    for path in find_runs(cfg.runs):
        model, task, ckpt = load_sequence_model(str(path))
        require(
            hasattr(model, "greedy") and hasattr(task, "sample_pairs"),
            f"run '{path}' is {ckpt.meta.get('core')} on {ckpt.meta.get('task')}: an encoder-decoder "
            "(model:rnnencdec, rnnsearch or bytenet) on a translation-like task is needed",
        )
        loaded.append((path, model, task, ckpt))
    translation = [x for x in loaded if x[3].meta["task"] == "translation"]
    attentive = next((x for x in translation if x[1].kind != "none"), None)
    chars = attentive is not None and attentive[2].level == "char"
    require(
        not cfg.video or (attentive is not None and not chars),
        "--video needs a run with attention (model:rnnsearch) on the translation task at word level "
        "(the first attentive run)",
    )
    plain = {}  # figure name -> the first translation run of that model without attention
    others = {}  # figure name -> the first translation run of every other attention kind
    for x in translation:
        if x[1].kind != "none" and model_label(x[1].cfg) != model_label(attentive[1].cfg):
            others.setdefault(f"alignment_{model_label(x[1].cfg)}.png", x)
    for x in translation:
        if x[1].kind == "none":
            plain.setdefault(implicit_name(x[1].cfg), x)
    folder = OutputFolder(cfg.out_dir, cfg.overwrite)
    outputs = {
        n: folder.claim(n)
        for n in ("alignment.png", "implicit.png", "length_bleu.png", "length_exact.png", "summary.json")
        + tuple(n for n in plain if n != "implicit.png")
        + tuple(others)
        + (("alignment.gif",) if cfg.video else ())
        + (("alignment_chars.png",) if chars else ())
    }
    runs, curves = [], {}
    for path, model, _, ckpt in loaded:
        test_task = build_task(ckpt.meta["task"], {**ckpt.meta["task_options"], "split": "test"})
        pairs = test_task.sample_pairs(cfg.sentences, np.random.default_rng(cfg.seed))
        label = model_label(model.cfg) + ("-char" if test_task.level == "char" else "")
        result = {
            "run": str(path),
            "model": label,
            "task": ckpt.meta["task"],
            "cpu_seconds": ckpt.counters.get("cpu_seconds"),
            "sequences": ckpt.counters.get("sequences"),
            **score_run(model, test_task, pairs, cfg.gradient_sentences, cfg.beam),
        }
        runs.append(result)
        curves.setdefault(label, []).append(result["by_length"])
        print(f"{label:<22} {path}: {result['decoding']}, exact {result['exact']:.1f} %, BLEU {result['bleu']:.1f}")
    summary: dict = {"sentences": cfg.sentences, "seed": cfg.seed, "beam": cfg.beam, "runs": runs}
    if translation:
        source, target = LECTURE_SOURCE.split(), LECTURE_TARGET.split()
        for entry, name, use_attention in (
            (attentive, "alignment.png", True),
            *((x, n, True) for n, x in others.items()),
            *((x, n, False) for n, x in plain.items()),
        ):
            if entry is None:
                continue
            attention, grads, over_chars = sentence_maps(entry[1], entry[2])
            weights = attention if use_attention else grads
            share = alignment_share(weights, LECTURE_ALIGNMENT)
            what = "attention" if use_attention else "gradient map ||d log p(y_i)/d x_j|| (row-normalised)"
            if entry[2].level == "char":
                what = f"{what}, character level summed to words"
            title = f"{model_label(entry[1].cfg)} {what}\nshare on the aligned word {share:.2f} ({entry[0]})"
            if over_chars is not None and name == "alignment.png":
                pair = lecture_pair(entry[2])
                with disk_errors(outputs["alignment_chars.png"]):
                    save_figure(
                        heatmap_figure(
                            over_chars,
                            [entry[2].source_vocab[i] for i in pair.source],
                            [entry[2].target_vocab[i] for i in pair.target],
                            f"{model_label(entry[1].cfg)} attention over characters ({entry[0]})",
                            cell=(0.13, 0.13),
                        ),
                        outputs["alignment_chars.png"],
                        close=True,
                    )
            with disk_errors(outputs[name]):
                save_figure(
                    heatmap_figure(weights, source, target, title, LECTURE_ALIGNMENT),
                    outputs[name],
                    close=True,
                )
            summary[name.removesuffix(".png") + "_share"] = share
        if cfg.video and attentive is not None:
            with disk_errors(outputs["alignment.gif"]):
                summary["video_share"] = write_video_of(
                    attentive[1], attentive[2], outputs["alignment.gif"], cfg.beam, cfg.video_fps, attentive[0]
                )
    for key, label, name in (
        ("bleu", f"BLEU ({'greedy' if cfg.beam == 1 else f'beam {cfg.beam}'})", "length_bleu.png"),
        ("exact", "exact match (%)", "length_exact.png"),
    ):
        with disk_errors(outputs[name]):
            save_figure(length_figure(curves, key, label), outputs[name], close=True)
    with disk_errors(outputs["summary.json"]):
        write_json_atomic(outputs["summary.json"], summary)
    return summary


def markdown(summary: dict) -> str:
    """Mean (min-max) over runs per model: exact match, BLEU, BLEU on the longest bin, alignment shares."""
    lines = [
        "| model | runs | CPU s | exact % | BLEU | BLEU, 40+ words | attention share | gradient share "
        "| gradient share, moved words | chance |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    models: dict[str, list[dict]] = {}
    for r in summary["runs"]:
        models.setdefault(r["model"], []).append(r)

    def cell(values) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        return f"{np.mean(values):.1f}" + (
            f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
        )

    for name, rs in models.items():
        long = [np.mean([b["bleu"] for b in r["by_length"] if b["lo"] >= 40] or [np.nan]) for r in rs]
        share = [None if r["attention_share"] is None else 100 * r["attention_share"] for r in rs]
        grad = [None if r["gradient_share"] is None else 100 * r["gradient_share"] for r in rs]
        moved = [None if r.get("gradient_share_moved") is None else 100 * r["gradient_share_moved"] for r in rs]
        lines.append(
            f"| {name} | {len(rs)} | {cell([r['cpu_seconds'] for r in rs])} | {cell([r['exact'] for r in rs])} | "
            f"{cell([r['bleu'] for r in rs])} | {cell(long)} | {cell(share)} % | {cell(grad)} % | {cell(moved)} % | "
            f"{100 * np.mean([r['chance_share'] for r in rs]):.1f} % |"
        )
    return "\n".join(lines)


def main(cfg: Config) -> dict:
    """Entry point: write the outputs, print the table."""
    summary = run(cfg)
    print(markdown(summary))
    print(f"figures and summary.json in {cfg.out_dir}")
    return summary


if __name__ == "__main__":
    from heed.agents.common.cli import parse_config
    from heed.agents.common.errors import cli_main

    cli_main(lambda: main(parse_config(Config, prog="translation_figures.py", description=__doc__)))
