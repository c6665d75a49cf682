"""Train handwriting synthesis (Graves 2013 §5) on heed's synthetic pen data, with or without the window.

    python scripts/train.py synthesis --max-cpu-seconds 720 --run-dir runs/synthesis
    python scripts/train.py synthesis --no-window --max-cpu-seconds 720 --run-dir runs/synthesis-nowindow
    python scripts/train.py synthesis --resume runs/synthesis --max-cpu-seconds 1800

Data (:mod:`heed.envs.handwriting`): lines of ``--min-words`` to ``--max-words`` training words in the
hands of the training writers. Writing a line costs a few milliseconds, so the trainer keeps a pool
of ``--pool-size`` lines (written before training starts, not counted in the budget) and replaces
``--refresh`` of them with new lines before every update (counted). Validation: ``--eval-size``
lines of held-out words by the held-out writers (:data:`~heed.envs.handwriting.TEST_WRITERS`),
written once with a fixed seed (the lines come from the recogniser trainer's
:func:`heed.agents.trainers.pen.write_lines`).

Loss: ``-log p(x_{t+1} | x_{<=t}, text)`` summed over a line's points, in nats (the first point is
predicted from a start input, see :func:`~heed.agents.handwriting_synthesis.shift_inputs`). Reported:
``eval/nll`` (nats per line, mean over the validation lines; Graves 2013 Table 4 reports -log-loss
the same way on IAM-OnDB), ``eval/nll_per_point``, and with the window ``eval/window_on_letter``: the
share of (non-delayed) points whose window peak ``argmax_u phi(t, u)`` is the letter being written or
a neighbour (:func:`heed.analysis.handwriting_figures.window_alignment`), beside ``eval/pace_on_letter``,
the same share for a window that moves at a constant pace (letter ``t U / T``, knowing the line's
length ``T``: the baseline to beat); ``eval/window_exact`` and ``eval/pace_exact`` count the very
letter only. The run plumbing (``--seed
--device --threads --run-dir --resume --progress``, checkpoints, the NaN guard, Ctrl-C/SIGTERM) is
:mod:`heed.agents.common.session`'s; a resumed run rewrites its pool from its restored random state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
import tyro
from tqdm import tqdm

from heed.agents.common.budget import BudgetConfig, BudgetFlags, optimise
from heed.agents.common.errors import HeedError
from heed.agents.common.run import Every, config_to_dict
from heed.agents.common.safe_io import disk_errors, write_json_atomic
from heed.agents.common.session import RunConfig, RunFlags, start_run
from heed.agents.common.state import StepBudget, restore_training_state
from heed.agents.common.validate import Range
from heed.agents.handwriting_mdn import log_likelihood
from heed.agents.handwriting_synthesis import HandwritingSynthesis, SynthesisConfig, shift_inputs
from heed.agents.trainers.pen import write_lines
from heed.analysis.handwriting_figures import uniform_pace, window_alignment
from heed.envs.handwriting import PenSample

KIND = "synthesis"
#: synthesis's budget and optimiser defaults (its learning rate stays constant)
BUDGET = BudgetConfig(steps=20_000, max_cpu_seconds=0.0, lr=1e-3, grad_clip=10.0, eval_every=250,
                      checkpoint_every=250, log_every=25)


@dataclass(frozen=True)
class Config:
    model: Annotated[SynthesisConfig, tyro.conf.arg(name="")] = field(default_factory=SynthesisConfig)
    """The network's size and --window/--no-window (flat flags: --hidden-size, --layers, ...)."""
    budget: BudgetFlags = field(default_factory=lambda: BUDGET)
    """--steps, --max-cpu-seconds, --lr (Adam, constant: no decay here), --grad-clip, --eval-every, --checkpoint-every, --log-every"""
    batch_size: Annotated[int, Range(1, 4096)] = 32
    """Lines per update."""
    min_words: Annotated[int, Range(1, 20)] = 1
    """Fewest words in a training line."""
    max_words: Annotated[int, Range(1, 20)] = 2
    """Most words in a training line."""
    pool_size: Annotated[int, Range(1, 1_000_000)] = 4096
    """Training lines kept in memory (written before the budget starts)."""
    refresh: Annotated[int, Range(0, 4096)] = 4
    """Pool lines replaced by new ones before every update."""
    eval_size: Annotated[int, Range(1, 10_000)] = 128
    """Validation lines (held-out words, held-out writers)."""
    run: RunFlags = field(default_factory=RunConfig)
    """--seed (torch and the data), --device, --threads, --run-dir, --resume, --progress"""


def length_bucket(pool: list[PenSample], batch_size: int, rng: np.random.Generator) -> list[PenSample]:
    """A batch of lines of similar length: ``batch_size`` neighbours in the pool's length order from a
    random start (less padding, so a CPU update costs about the lines' mean length, not the longest)."""
    order = np.argsort([len(s.points) for s in pool], kind="stable")
    start = int(rng.integers(max(1, len(pool) - batch_size + 1)))
    return [pool[int(i)] for i in order[start : start + batch_size]]


def pen_batch(samples: list[PenSample], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad lines to one batch: points ``[B, T, 3]`` float32 (zeros past the end) and mask ``[B, T]``."""
    t = max(len(s.points) for s in samples)
    points = np.zeros((len(samples), t, 3), np.float32)
    mask = np.zeros((len(samples), t), np.float32)
    for b, s in enumerate(samples):
        points[b, : len(s.points)] = s.points
        mask[b, : len(s.points)] = 1.0
    return torch.from_numpy(points).to(device), torch.from_numpy(mask).to(device)


def sequence_nll(model: HandwritingSynthesis, samples: list[PenSample], device: torch.device):
    """``(-log p [B] in nats per line, the forward output)`` of a batch of lines."""
    points, mask = pen_batch(samples, device)
    onehot, lengths = model.encode([s.text for s in samples])
    out = model(shift_inputs(points), onehot, lengths)
    return -(log_likelihood(out.params, points) * mask).sum(1), out


@torch.no_grad()
def evaluate(model: HandwritingSynthesis, samples: list[PenSample], device: torch.device,
             chunk: int = 64) -> dict[str, float]:
    """Validation NLL (nats per line and per point) and, with a window, how often its peak is on the letter."""
    model.eval()
    nlls, on_letter, on_delayed, pace, exact, pace_exact = [], [], [], [], [], []
    for start in range(0, len(samples), chunk):
        part = samples[start : start + chunk]
        nll, out = sequence_nll(model, part, device)
        nlls.append(nll.cpu())
        if model.cfg.window:
            phi = out.phi.cpu().numpy()
            for b, s in enumerate(part):
                span = phi[b, : len(s.points), : len(s.text)]
                baseline = uniform_pace(len(s.points), len(s.text))
                on_letter.append(window_alignment(span, s.char_index, ~s.delayed))
                pace.append(window_alignment(baseline, s.char_index, ~s.delayed))
                exact.append(window_alignment(span, s.char_index, ~s.delayed, tolerance=0))
                pace_exact.append(window_alignment(baseline, s.char_index, ~s.delayed, tolerance=0))
                if s.delayed.any():
                    on_delayed.append(window_alignment(span, s.char_index, s.delayed))
    model.train()
    nll = torch.cat(nlls)
    points = sum(len(s.points) for s in samples)
    results = {"nll": float(nll.mean()), "nll_per_point": float(nll.sum()) / points}
    if on_letter:
        results["window_on_letter"] = float(np.mean(on_letter))
        results["pace_on_letter"] = float(np.mean(pace))  # the baseline: letter = t U / T
        results["window_exact"] = float(np.mean(exact))  # the peak on the very letter (no slack)
        results["pace_exact"] = float(np.mean(pace_exact))
        if on_delayed:
            results["window_on_delayed"] = float(np.mean(on_delayed))
    return results


def main(cfg: Config) -> dict:
    """Train (or resume with ``--resume``), evaluate and checkpoint; returns the results (also in results.json)."""
    name = "window" if cfg.model.window else "no-window"
    run = start_run(KIND, cfg, name=f"pen-{name}", checkpoint_kind=KIND, metric_tags=("eval/nll",))
    cfg, device = run.cfg, run.device
    flags = cfg.budget
    if cfg.min_words > cfg.max_words:
        raise HeedError(f"--min-words ({cfg.min_words}) must be <= --max-words ({cfg.max_words})")
    valid = write_lines(cfg.eval_size, "test", np.random.default_rng(12345), cfg.min_words, cfg.max_words)
    rng = np.random.default_rng(cfg.run.seed)
    model = HandwritingSynthesis(cfg.model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=flags.lr)
    state = dict(StepBudget.INITIAL)
    if run.checkpoint is not None:
        state = restore_training_state(run.checkpoint, model, opt, rng, state)
    pool = write_lines(cfg.pool_size, "train", rng, cfg.min_words, cfg.max_words)
    budget = StepBudget(run, state, flags.steps, flags.max_cpu_seconds)
    start = budget.start

    def checkpoint() -> None:
        """Save the completed updates (once per step), with the time spent so far."""
        budget.save(model, config_to_dict(cfg), opt, rng)

    results: dict = {}
    log_due, eval_due, checkpoint_due = (Every(n, start) for n in (flags.log_every, flags.eval_every, flags.checkpoint_every))
    bar = tqdm(initial=start, total=flags.steps, disable=not cfg.run.progress, desc=f"synthesis/{name}")
    with run.interruptible(checkpoint, "--max-cpu-seconds"), bar:
        while budget.progress() < 1.0:
            for i, line in zip(rng.integers(len(pool), size=cfg.refresh),
                               write_lines(cfg.refresh, "train", rng, cfg.min_words, cfg.max_words)):
                pool[int(i)] = line
            batch = length_bucket(pool, cfg.batch_size, rng)
            nll, _ = sequence_nll(model, batch, device)
            loss = nll.mean()
            optimise(opt, loss, model.parameters(), budget.progress(), flags.lr, flags.grad_clip, decay=False)
            done = budget.step()
            bar.update(1)
            last = budget.progress() >= 1.0
            if log_due.due(done):  # a NaN/inf loss stops the run here, keeping the last finite checkpoint
                points = sum(len(s.points) for s in batch)
                run.log_scalars("losses", {"nll": loss.item(), "nll_per_point": nll.sum().item() / points}, done)
                run.log_scalars("charts", {"cpu_seconds": budget.cpu_seconds}, done)
                bar.set_postfix(nll=f"{loss.item():.1f}")
            if eval_due.due(done) or last:
                results = {**evaluate(model, valid, device), "step": done}
                run.log_scalars("eval", {k: v for k, v in results.items() if k != "step"}, done)
                run.append_metrics(done, {**results, "cpu_seconds": budget.cpu_seconds})
                budget.pause()  # evaluation does not count against the training budget
            if checkpoint_due.due(done) or last:
                checkpoint()
    if not results:  # resumed a finished run: just evaluate
        results = {**evaluate(model, valid, device), "step": start}
    results.update(
        window=cfg.model.window,
        params=sum(p.numel() for p in model.parameters()),
        seconds=round(budget.seconds, 1),
        cpu_seconds=round(budget.cpu_seconds, 1),
        validation_lines=len(valid),
        seed=cfg.run.seed,
    )
    with disk_errors(run.dir / "results.json"):
        write_json_atomic(run.dir / "results.json", results)
    run.finish({"eval/nll": results["nll"]}, "--max-cpu-seconds", results["step"])
    return results
