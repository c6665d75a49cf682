"""Train an online handwriting recogniser with CTC on the synthetic pen data (Graves et al. 2009).

    python scripts/train.py pen --max-cpu-seconds 900 --run-dir runs/pen-blstm
    python scripts/train.py pen --max-cpu-seconds 900 --run-dir runs/pen-lstm model:blstm --model.no-bidirectional
    python scripts/train.py pen --resume runs/pen-blstm --steps 40000

Data (:mod:`heed.envs.handwriting`): every batch is written afresh: lines of ``--min-words`` to
``--max-words`` training words, each by a writer drawn from the 1,000 training writers. The test set
is fixed (``--eval-size`` lines of held-out words by the 100 held-out writers, seed 12345), so
``eval/cer`` measures generalisation to writers never seen. The model is any sequence model of the
table of parts (default ``model:blstm``, :mod:`heed.agents.handwriting_ctc`), with
``len(ALPHABET) + 1`` outputs, class 0 the blank, trained with ``torch.nn.CTCLoss``.

Reported (TensorBoard ``eval/*``, ``results.json``): the character error rate (edit distance over
characters / characters) and word error rate (the same over words) with greedy (best path) and
prefix-beam decoding. TensorBoard also gets ``losses/ctc`` (nats per line) and
``charts/learning_rate``. The run plumbing (``--seed --device --threads --run-dir --resume
--progress``, checkpoints, the NaN guard, Ctrl-C/SIGTERM) is :mod:`heed.agents.common.session`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from heed.agents.common.budget import BudgetConfig, BudgetFlags, optimise
from heed.agents.common.checkpoint import load_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.run import Every, config_to_dict
from heed.agents.common.safe_io import disk_errors, write_json_atomic
from heed.agents.common.session import RunConfig, RunFlags, start_run
from heed.agents.common.state import StepBudget, load_module_state
from heed.agents.common.validate import Range
from heed.agents.handwriting_ctc import (
    BLSTM,
    BLSTMConfig,
    PenBatch,
    collate,
    ctc_loss,
    greedy_decode,
    prefix_beam_decode,
)
from heed.agents.parts import build_model, model_choice, part_from_dict, part_to_dict
from heed.envs.handwriting import (
    ALPHABET,
    TEST_WRITERS,
    TRAIN_WRITERS,
    PenSample,
    decode_labels,
    sample_text,
    write,
    writer_style,
)
from heed.envs.pen_env import edit_distance

KIND = "pen"
INPUT_SIZE, OUTPUT_SIZE = 3, len(ALPHABET) + 1
PenModel = model_choice()
#: pen's budget and optimiser defaults
BUDGET = BudgetConfig(steps=20_000, max_cpu_seconds=0.0, lr=2e-3, grad_clip=10.0, eval_every=500,
                      checkpoint_every=250, log_every=50)


@dataclass(frozen=True)
class Config:
    model: PenModel = field(default_factory=BLSTMConfig)
    """the recogniser, chosen last: model:blstm [--model.hidden-size H --model.no-bidirectional] (any part works)"""
    budget: BudgetFlags = field(default_factory=lambda: BUDGET)
    """--steps, --max-cpu-seconds, --lr (Adam, cosine-decayed to 5%), --grad-clip, --eval-every, --checkpoint-every, --log-every"""
    batch_size: Annotated[int, Range(1, 4096)] = 16
    """Lines per update."""
    min_words: Annotated[int, Range(1, 20)] = 1
    """Fewest words per training line."""
    max_words: Annotated[int, Range(1, 20)] = 2
    """Most words per training line (test lines too)."""
    eval_size: Annotated[int, Range(1, 100_000)] = 300
    """Held-out lines (held-out writers and words) for the error rates."""
    beam: Annotated[int, Range(1, 256)] = 8
    """Prefix-beam width for the beam-search error rates."""
    run: RunFlags = field(default_factory=RunConfig)
    """--seed (torch and the data), --device, --threads, --run-dir, --resume, --progress"""


def write_lines(count: int, split: str, rng: np.random.Generator, min_words: int = 1,
                max_words: int = 3) -> list[PenSample]:
    """``count`` lines of the split's words, each by a writer of the split (train or held-out) drawn from ``rng``."""
    writers = TRAIN_WRITERS if split == "train" else TEST_WRITERS
    out = []
    for _ in range(count):
        style = writer_style(int(rng.integers(writers.start, writers.stop)))
        out.append(write(sample_text(rng, min_words, max_words, split), style, rng))
    return out


def test_lines(count: int, max_words: int = 3, seed: int = 12345) -> list[PenSample]:
    """The fixed held-out set: ``count`` lines by held-out writers, of held-out words."""
    return write_lines(count, "test", np.random.default_rng(seed), 1, max_words)


def model_logits(model: nn.Module, batch: PenBatch) -> torch.Tensor:
    """``[B, T, K]`` logits; a :class:`BLSTM` gets the lengths (its backward pass starts at each line's end)."""
    if isinstance(model, BLSTM):
        return model(batch.inputs, batch.lengths)[0]
    return model(batch.inputs)[0]


@torch.no_grad()
def recognise(model: nn.Module, samples: list[PenSample], beam: int = 0, chunk: int = 64) -> list[str]:
    """The text ``model`` reads in each sample: greedy decoding (``beam == 0``) or prefix beam search."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    texts = []
    for start in range(0, len(samples), chunk):
        batch = collate(samples[start : start + chunk], device)
        log_probs = torch.log_softmax(model_logits(model, batch), -1).cpu().numpy()
        for row, length in zip(log_probs, batch.lengths.tolist()):
            labels = prefix_beam_decode(row[:length], beam) if beam else greedy_decode(row[:length])
            texts.append(decode_labels(labels))
    model.train(was_training)
    return texts


def error_rates(predictions: list[str], truths: list[str]) -> dict[str, float]:
    """``cer``: summed character edit distance / characters; ``wer``: the same over words (space-split)."""
    chars = sum(edit_distance(p, t) for p, t in zip(predictions, truths)) / max(1, sum(map(len, truths)))
    words = sum(edit_distance(p.split(), t.split()) for p, t in zip(predictions, truths))
    return {"cer": chars, "wer": words / max(1, sum(len(t.split()) for t in truths))}


def evaluate(model: nn.Module, samples: list[PenSample], beam: int) -> dict[str, float]:
    """CER/WER with greedy and beam decoding (``cer``, ``wer``, ``cer_beam``, ``wer_beam``) on ``samples``."""
    truths = [s.text for s in samples]
    greedy = error_rates(recognise(model, samples), truths)
    beamed = error_rates(recognise(model, samples, beam), truths)
    return {**greedy, "cer_beam": beamed["cer"], "wer_beam": beamed["wer"]}


def load_recogniser(path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """The recogniser of a pen run dir, checkpoint dir or shipped folder, in eval mode, and its meta."""
    ckpt = load_checkpoint(path, expect_kind=KIND)
    if not isinstance(ckpt.meta.get("model"), dict):
        raise HeedError(f"checkpoint '{ckpt.path}': 'model' in meta.json is missing or not an object")
    model = build_model(part_from_dict(ckpt.meta["model"], f"checkpoint '{ckpt.path}'"), INPUT_SIZE, OUTPUT_SIZE)
    load_module_state(model, {k: v.float() for k, v in ckpt.tensors.items()}, where=str(ckpt.path))
    return model.to(device).eval(), ckpt.meta


def main(cfg: Config) -> dict:
    """Train (or resume with ``--resume``), evaluate and checkpoint; returns the results (also in results.json)."""
    name = getattr(cfg.model, "name", "model")
    run = start_run(KIND, cfg, name=f"pen-{name}", metric_tags=("eval/cer",))
    cfg, device = run.cfg, run.device
    flags = cfg.budget
    if cfg.min_words > cfg.max_words:
        raise HeedError(f"--min-words {cfg.min_words} is more than --max-words {cfg.max_words}")
    test = test_lines(cfg.eval_size, cfg.max_words)
    rng = np.random.default_rng(cfg.run.seed)
    model = build_model(cfg.model, INPUT_SIZE, OUTPUT_SIZE).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=flags.lr)
    budget = StepBudget.begin(run, model, opt, rng, flags.steps, flags.max_cpu_seconds)
    start = budget.start

    def checkpoint() -> None:
        """Save the completed updates (once per step), with the time spent so far."""
        budget.save(model, config_to_dict(cfg), opt, rng, model=part_to_dict(cfg.model))

    results: dict = {}
    log_due, eval_due, checkpoint_due = (Every(n, start) for n in (flags.log_every, flags.eval_every, flags.checkpoint_every))
    bar = tqdm(initial=start, total=flags.steps, disable=not cfg.run.progress, desc=f"pen/{name}")
    with run.interruptible(checkpoint, "--steps"), bar:
        while budget.progress() < 1.0:
            batch = collate(write_lines(cfg.batch_size, "train", rng, cfg.min_words, cfg.max_words), device)
            loss = ctc_loss(model_logits(model, batch), batch)
            optimise(opt, loss, model.parameters(), budget.progress(), flags.lr, flags.grad_clip)
            done = budget.step()
            bar.update(1)
            last = budget.progress() >= 1.0
            if log_due.due(done):  # a NaN/inf loss stops the run here, keeping the last finite checkpoint
                run.log_scalars("losses", {"ctc": loss.item()}, done)
                run.log_scalars("charts", {"learning_rate": opt.param_groups[0]["lr"], "cpu_seconds": budget.cpu_seconds}, done)
                bar.set_postfix(ctc=f"{loss.item():.2f}")
            if eval_due.due(done) or last:
                results = {**evaluate(model, test, cfg.beam), "step": done}
                run.log_scalars("eval", {k: results[k] for k in ("cer", "wer", "cer_beam", "wer_beam")}, done)
                run.append_metrics(done, {**results, "cpu_seconds": budget.cpu_seconds})
                budget.pause()  # evaluation does not count against the training budget
            if checkpoint_due.due(done) or last:
                checkpoint()
    if not results:  # resumed a finished run: just evaluate
        results = {**evaluate(model, test, cfg.beam), "step": start}
    results.update(
        model=part_to_dict(cfg.model),
        params=sum(p.numel() for p in model.parameters()),
        seconds=round(budget.seconds, 1),
        cpu_seconds=round(budget.cpu_seconds, 1),
        test_lines=len(test),
        seed=cfg.run.seed,
    )
    with disk_errors(run.dir / "results.json"):
        write_json_atomic(run.dir / "results.json", results)
    run.finish({"eval/cer": results["cer"]}, "--steps", results["step"])
    return results
