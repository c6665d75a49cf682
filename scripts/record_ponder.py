"""Record pondering and attention of a trained sequence model: numbers (summary.json) and figures.

``python scripts/record_ponder.py --checkpoint runs/parity-act --out-dir runs/parity-act/ponder``

What it records depends on the run's task:

- ``parity``: error and ponder time against the number of non-zero inputs (``ponder_vs_nonzero.png``);
- ``logic``/``addition``: ponder time per input step of one sequence (``ponder_per_step.png``) and
  the mean per step index; addition also reports the sequence error (any digit wrong);
- ``babi``: error and mean ponder per task 1-3 (all three when trained jointly, ``task=0``), ponder by
  number of supporting facts (``ponder_vs_facts.png``: mean over all steps; ``ponder_question_vs_facts.png``:
  at the question step), ponder per step of one story; per task, ponder per sentence on the question's
  supporting facts against the distractors (``support_vs_distractor``, from the generator's supporting
  fact ids) and ``ponder_story.png``, ponder per sentence under one held-out story with the supporting
  facts marked (``--story-figure PATH`` writes a copy there, e.g. docs/figures/ponder/babi_ponder_story.png);
- ``seqcopy``/``reverse``: sequence and symbol accuracy at each ``--eval-lengths`` length;
- ``text``: mean ponder per character class (letters, spaces, punctuation, digits, random-ID digits)
  over ``--text-chars`` held-out characters (the validation split, with random ID lines as in training
  or, if the run had none, every ``--id-every`` characters), and ponder under a held-out passage that
  holds an ID (``ponder_under_text.png``, the lecture's figure);
- always, for self-attention models: attention maps per head and layer of one sequence (``attention.png``).

Files of these names in the output folder are replaced only when heed wrote them (or with
``--overwrite``); other files there are left alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import cli_main
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.trainers.sequence_utils import batch_to_tensors, load_sequence_model, model_config_from_meta
from heed.analysis import ponder_figures as pf
from heed.envs.babi import LOCATIONS, BabiTask, sentences, support_steps
from heed.envs.ponder import addition_digits
from heed.envs.tasks import TASKS
from heed.envs.text import CHAR_INDEX, TextTask, decode, one_hot


@dataclass(frozen=True)
class Config:
    """Record ponder time and attention maps of a trained model."""

    checkpoint: Path
    """run dir, checkpoint dir or weights file of a supervised run"""
    out_dir: Path | None = None
    """where summary.json and the figures go (default: CHECKPOINT/ponder)"""
    sequences: Annotated[int, Range(1, 1_000_000)] = 1024
    """sequences to evaluate (per bAbI task / per length)"""
    batch_size: Annotated[int, Range(1, 65_536)] = 64
    """evaluation batch size"""
    eval_lengths: Annotated[tuple[int, ...], Range(1, 10_000)] = (40, 400)
    """copy/reverse: evaluate at these exact lengths"""
    long_batch_size: Annotated[int, Range(1, 65_536)] = 4
    """batch size for lengths above 100 (attention maps grow as T^2)"""
    seed: Annotated[int, SeedRange] = 12345
    """seed of the evaluation sequences"""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads"""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""
    text_chars: Annotated[int, Range(100, 10_000_000)] = 20_000
    """text: held-out characters over which the per-class means are taken"""
    passage_chars: Annotated[int, Range(10, 2_000)] = 240
    """text: characters of the passage drawn under its ponder time"""
    id_every: Annotated[int, Range(1, 1_000_000)] = 300
    """text: random ID lines every this many held-out characters when the run was trained without them"""
    story_task: Annotated[int, Range(1, 3)] = 2
    """bAbI: the task of the story drawn in ponder_story.png"""
    story_facts: Annotated[int, Range(1, 1000)] = 8
    """bAbI: facts in that story"""
    story_figure: Path | None = None
    """bAbI: also write ponder_story.png to this path (e.g. docs/figures/ponder/babi_ponder_story.png)"""


#: the files each kind of task writes (summary.json always)
OUTPUTS = {
    "parity": ("ponder_vs_nonzero.png",),
    "babi": ("ponder_vs_facts.png", "ponder_question_vs_facts.png", "ponder_per_token.png", "ponder_story.png",
             "attention.png"),
    "seqcopy": ("attention.png",),
    "reverse": ("attention.png",),
    "text": ("ponder_under_text.png",),
}


def _run(model, task, batch) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    inputs, targets, mask = batch_to_tensors(batch, task.loss, torch.device("cpu"))
    with torch.no_grad():
        logits, attention, _ = model(inputs)
    att = {k: v.numpy() for k, v in attention.items()}
    return logits.numpy(), att, targets.numpy(), mask.numpy(), inputs.numpy()


def _ponder_per_sequence(att: dict[str, np.ndarray], inputs: np.ndarray) -> np.ndarray:
    """Mean ponder time over real (non-padding) steps ``[B]`` (NaN when the model does not ponder)."""
    if "ponder" not in att:
        return np.full(inputs.shape[0], np.nan)
    real = np.abs(inputs).sum(-1) > 0
    return (att["ponder"] * real).sum(1) / np.maximum(real.sum(1), 1)


def _attention_figure(
    att: dict[str, np.ndarray], inputs: np.ndarray, out: Path, labels=None, limit: int = 60
):
    if "attention" not in att:
        return None
    steps = min(int((np.abs(inputs[0]).sum(-1) > 0).sum()), limit)
    maps = att["attention"][0][:, :, :steps, :steps]
    maps = maps[np.abs(maps).sum(axis=(1, 2, 3)) > 0]  # UT+ACT: drop depth steps that did not run
    return str(
        pf.attention_grid(maps, out / "attention.png", labels=None if labels is None else labels[:steps])
    )


def _parity(model, task, cfg: Config, out: Path) -> dict:
    rng = np.random.default_rng(cfg.seed)
    groups, ponder, wrong = [], [], []
    for _ in range(max(1, cfg.sequences // cfg.batch_size)):
        batch = task.sample(cfg.batch_size, rng)
        logits, att, targets, _, inputs = _run(model, task, batch)
        groups.append((inputs[:, 0] != 0).sum(-1))
        ponder.append(att["ponder"][:, 0] if "ponder" in att else np.ones(len(inputs)))
        wrong.append(((logits[:, 0, 0] > 0) != (targets[:, 0, 0] > 0.5)).astype(float))
    g, p, w = np.concatenate(groups), np.concatenate(ponder), np.concatenate(wrong)
    pf.ponder_by_group(
        g,
        p,
        out / "ponder_vs_nonzero.png",
        "number of non-zero inputs",
        second=w,
        second_label="error rate",
        title="parity",
    )
    size = task.input_size  # quarters of the input size (1-16, ..., 49-64 for the paper's 64 inputs)
    edges = np.linspace(0, size, 5).round().astype(int)
    bins = [(int(a) + 1, int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    by_bin = {
        f"{a}-{b}": {
            "ponder": float(p[(g >= a) & (g <= b)].mean()),
            "error": float(w[(g >= a) & (g <= b)].mean()),
        }
        for a, b in bins
        if ((g >= a) & (g <= b)).any()
    }
    return {
        "error": float(w.mean()),
        "ponder": float(p.mean()),
        "by_nonzero": by_bin,
        "by_count": {str(k): v for k, v in pf.group_stats(g, p).items()},  # (mean ponder, std, sequences)
        "error_by_count": {str(k): v[0] for k, v in pf.group_stats(g, w).items()},
    }


def _stepwise(model, task, cfg: Config, out: Path) -> dict:
    rng = np.random.default_rng(cfg.seed)
    ponders, seq_wrong, steps = [], [], []
    for _ in range(max(1, cfg.sequences // cfg.batch_size)):
        batch = task.sample(cfg.batch_size, rng)
        logits, att, targets, mask, inputs = _run(model, task, batch)
        real = np.abs(inputs).sum(-1) > 0
        if "ponder" in att:
            ponders.append(att["ponder"][real])
            steps.append(np.nonzero(real)[1])
        if task.name == "addition":
            bad = (addition_digits(logits) != addition_digits(targets)).any(-1) & (mask > 0)
        else:
            bad = ((logits > 0) != (targets > 0.5)).any(-1) & (mask > 0)
        seq_wrong.append(bad.any(1))
    result = {"sequence_error": float(np.concatenate(seq_wrong).mean())}
    if ponders:
        p, s = np.concatenate(ponders), np.concatenate(steps)
        result["ponder"] = float(p.mean())
        result["ponder_by_step"] = {str(k): v[0] for k, v in pf.group_stats(s, p).items()}
        one = task.sample(1, np.random.default_rng(cfg.seed + 1))
        _, att, targets, _, _ = _run(model, task, one)
        pf.ponder_per_step(
            att["ponder"][0], out / "ponder_per_step.png", title=f"{task.name}: ponder per input step"
        )
    return result


def _babi(model, task, cfg: Config, out: Path) -> dict:
    tasks = (1, 2, 3) if task.task == 0 else (task.task,)
    result, groups, ponders, wrongs, asked = {}, [], [], [], []
    for k in tasks:
        sub = BabiTask(
            task=k, min_statements=task.min_statements, max_statements=task.max_statements, encoding=task.encoding
        )
        rng = np.random.default_rng(cfg.seed + k)
        p_all, w_all, q_all, facts, supports = [], [], [], [], []
        for _ in range(max(1, cfg.sequences // cfg.batch_size)):
            qas = [sub.sample_qa(rng) for _ in range(cfg.batch_size)]
            logits, att, targets, mask, inputs = _run(model, sub, sub.batch(qas))
            w_all.append(((logits.argmax(-1) != targets) & (mask > 0)).any(1).astype(float))
            p_all.append(_ponder_per_sequence(att, inputs))
            if "ponder" in att:  # ponder at the scored step: the question (one per story)
                q_all.append((att["ponder"] * (mask > 0)).sum(1))
                facts += [pf.sentence_ponder(rho, sub.sentence_spans(qa))[:-1] for rho, qa in zip(att["ponder"], qas)]
                supports += [support_steps(qa) for qa in qas]
        p, w = np.concatenate(p_all), np.concatenate(w_all)
        result[f"task{k}"] = {
            "error": float(w.mean()),
            "ponder": None if np.isnan(p).all() else float(np.nanmean(p)),
            "ponder_question": float(np.concatenate(q_all).mean()) if q_all else None,
            "support_vs_distractor": pf.support_contrast(facts, supports) if facts else None,
        }
        asked.append(np.concatenate(q_all) if q_all else np.full(len(p), np.nan))
        groups.append(np.full(len(p), k))
        ponders.append(p)
        wrongs.append(w)
    p = np.concatenate(ponders)
    if not np.isnan(p).all():
        pf.ponder_by_group(
            np.concatenate(groups),
            p,
            out / "ponder_vs_facts.png",
            "supporting facts (bAbI task)",
            second=np.concatenate(wrongs),
            second_label="error rate",
            title="bAbI: mean ponder over all steps",
        )
        pf.ponder_by_group(
            np.concatenate(groups),
            np.concatenate(asked),
            out / "ponder_question_vs_facts.png",
            "supporting facts (bAbI task)",
            ylabel="ponder time at the question",
            title="bAbI: ponder at the question step",
        )
    one = BabiTask(task=tasks[-1], max_statements=4, encoding=task.encoding).sample(1, np.random.default_rng(cfg.seed))
    _, att, _, _, inputs = _run(model, task, one)
    labels = task.labels(inputs[0])
    if "ponder" in att:
        pf.ponder_per_step(
            att["ponder"][0], out / "ponder_per_token.png", labels=labels, title="bAbI: ponder per step (word or sentence)"
        )
    result["attention_figure"] = _attention_figure(att, inputs, out, labels)
    if "ponder" in att:
        result["story"] = _story_figure(model, task, cfg, out)
    return result


def _story_figure(model, task, cfg: Config, out: Path) -> dict:
    """Ponder per sentence of one held-out story under the story, supporting facts marked."""
    sub = BabiTask(task=cfg.story_task, min_statements=cfg.story_facts, max_statements=cfg.story_facts,
                   encoding=task.encoding)
    qa = sub.sample_qa(np.random.default_rng(cfg.seed + 100))
    logits, att, _, mask, _ = _run(model, sub, sub.batch([qa]))
    rho = pf.sentence_ponder(att["ponder"][0], sub.sentence_spans(qa))
    answer = LOCATIONS[int(logits[0][mask[0] > 0].argmax(-1)[0])]
    title = f"bAbI task {cfg.story_task}: answer {qa.answer}, model says {answer} (orange *: supporting fact)"
    lines = sentences(qa)
    paths = [out / "ponder_story.png"] + ([cfg.story_figure] if cfg.story_figure else [])
    for path in paths:
        pf.ponder_story(lines, rho, support_steps(qa), path, title=title)
    return {"sentences": lines, "ponder": [round(float(r), 3) for r in rho], "supports": support_steps(qa),
            "answer": qa.answer, "predicted": answer, "figure": [str(p) for p in paths]}


def _copy(model, task, cfg: Config, out: Path) -> dict:
    result = {}
    for length in cfg.eval_lengths:
        sub = TASKS[task.name](min_len=length, max_len=length, symbols=task.symbols)
        rng = np.random.default_rng(cfg.seed + length)
        size = cfg.batch_size if length <= 100 else cfg.long_batch_size
        seq_ok, sym_ok, by_index = [], [], []
        count = cfg.sequences if length <= 100 else max(size, cfg.sequences // 16)
        for _ in range(max(1, count // size)):
            logits, _, targets, mask, _ = _run(model, sub, sub.sample(size, rng))
            right = (logits.argmax(-1) == targets) | (mask == 0)
            seq_ok.append(right.all(1))
            sym_ok.append(((logits.argmax(-1) == targets) & (mask > 0)).sum() / mask.sum())
            by_index.append(right[:, length + 1 : 2 * length + 1].mean(0))  # [length]: per output index
        per_index = np.mean(by_index, axis=0)
        edges = [e for e in (0, 40, 100, 200, 400) if e < length] + [length]
        result[f"length{length}"] = {
            "sequence_accuracy": float(np.concatenate(seq_ok).mean()),
            "symbol_accuracy": float(np.mean(sym_ok)),
            "symbol_accuracy_by_output_index": {
                f"{a}-{b - 1}": float(per_index[a:b].mean()) for a, b in zip(edges[:-1], edges[1:])
            },
        }
    one = TASKS[task.name](min_len=12, max_len=12, symbols=task.symbols).sample(
        1, np.random.default_rng(cfg.seed)
    )
    _, att, _, _, inputs = _run(model, task, one)
    result["attention_figure"] = _attention_figure(att, inputs, out)
    return result


def _text_ponder(model, chars: np.ndarray) -> np.ndarray:
    """Ponder time ``[B, T]`` of the model reading characters ``[B, T]`` (class indices) from a zero state."""
    with torch.no_grad():
        _, attention, _ = model(torch.from_numpy(one_hot(chars)))
    return attention["ponder"].numpy()


def _text(model, task, cfg: Config, out: Path) -> dict:
    """Per-class mean ponder over held-out windows, and the ponder figure under one held-out passage."""
    heldout = TextTask(window=task.window, split="validation", id_every=task.id_every or cfg.id_every,
                       id_length=task.id_length)
    rng = np.random.default_rng(cfg.seed)
    count = min(cfg.text_chars, len(heldout.ids) - 1) // task.window
    starts = np.arange(count) * task.window  # consecutive windows from the start of the held-out text
    ponders, classes = [], []
    for first in range(0, count, cfg.batch_size):
        chars = heldout.windows(starts[first : first + cfg.batch_size], rng)[:, :-1]
        slots = heldout.ids[starts[first : first + cfg.batch_size, None] + np.arange(task.window)] < 0
        ponder = _text_ponder(model, chars)
        ponders.append(ponder.ravel())
        classes.append(pf.char_classes(decode(chars.ravel()), slots.ravel()))
    rho, group = np.concatenate(ponders), np.concatenate(classes)
    by_class = {pf.CHAR_CLASSES[k]: {"ponder": v[0], "std": v[1], "characters": v[2]}
                for k, v in pf.group_stats(group, rho).items()}
    first_id = int(np.argmax(heldout.ids < 0))  # the passage ends a little after the first ID
    start = max(0, first_id + 40 - cfg.passage_chars)
    chars = heldout.ids[start : start + cfg.passage_chars].copy()
    slots = chars < 0
    chars[slots] = CHAR_INDEX["0"] + np.random.default_rng(cfg.seed + 1).integers(0, 10, int(slots.sum()))
    passage = decode(chars)
    ponder = _text_ponder(model, chars[None])[0]
    pf.ponder_under_text(passage, ponder, out / "ponder_under_text.png",
                         title="ponder time per character of held-out text")
    return {
        "ponder": float(rho.mean()),
        "characters": int(rho.size),
        "id_every": heldout.id_every,
        "ponder_by_class": by_class,
        "passage": passage,
        "passage_ponder": [round(float(x), 3) for x in ponder],
    }


def main(cfg: Config) -> dict:
    """Evaluate the checkpoint and write ``summary.json`` and the figures; return the summary."""
    validate(cfg)
    torch.set_num_threads(cfg.threads)
    model, task, ckpt = load_sequence_model(str(cfg.checkpoint))
    name = ckpt.meta["task"]
    out = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.checkpoint) / "ponder"
    folder = OutputFolder(out, cfg.overwrite)
    for file in ("summary.json", *OUTPUTS.get(name, ("ponder_per_step.png",))):
        folder.claim(file)  # every refusal before any work
    if cfg.story_figure is not None:
        OutputFolder(Path(cfg.story_figure).parent, cfg.overwrite, "--story-figure").claim(Path(cfg.story_figure).name)
    with disk_errors(out):
        return _record(cfg, model, task, ckpt, out)


def _record(cfg: Config, model, task, ckpt, out: Path) -> dict:
    name = ckpt.meta["task"]
    if name == "parity":
        summary = _parity(model, task, cfg, out)
    elif name == "babi":
        summary = _babi(model, task, cfg, out)
    elif name in ("seqcopy", "reverse"):
        summary = _copy(model, task, cfg, out)
    elif name == "text":
        summary = _text(model, task, cfg, out)
    else:
        summary = _stepwise(model, task, cfg, out)
    summary = {"task": name, "core": model_config_from_meta(ckpt.meta).name, "counters": ckpt.meta.get("counters", {}), **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    cli_main(lambda: print(json.dumps(main(parse_config(Config, prog="record_ponder.py", description=__doc__)), indent=2)))
