"""The dynamic n-gram figure: trained models against the Bayes-optimal predictor, step by step.

    python scripts/ngram_figure.py --checkpoints runs/mem17/ngrams-ntm-s1 runs/mem17/ngrams-lstm-s1 \
        --out docs/figures/memory/ngram_figure.png

Every checkpoint (run dir, checkpoint dir or shipped weights, all trained on ``dynamic-ngrams`` with
the same order) predicts the same fresh sequences (``--sequences``, seed ``--seed``); so does the
Bayes-optimal predictor ``(N_1 + 1/2) / (N_0 + N_1 + 1)``
(:func:`heed.envs.algorithmic.ngram_bayes_predictions`). Printed: bits per sequence of each model
and of the optimum on the scored steps, as ``scripts/evaluate_memory.py`` scores them. Drawn
(:func:`heed.analysis.memory_figures.ngram_figure`): one sequence's predictions, and each model's
mean cost above the optimum per step. An existing ``--out`` or ``--json-out`` file is replaced
only when heed wrote it (or with ``--overwrite``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.trainers import sequence_utils as su
from heed.analysis.memory_figures import ngram_figure
from heed.envs.algorithmic import DynamicNGramsTask, ngram_bayes_predictions


@dataclass(frozen=True)
class Config:
    """Models trained on dynamic n-grams against the Bayes-optimal predictor: table and figure."""

    checkpoints: tuple[Path, ...] = field(default_factory=tuple)
    """run dirs, checkpoint dirs or shipped weights of dynamic-ngrams models (one or more)"""
    sequences: Annotated[int, Range(1, 100_000)] = 256
    """fresh test sequences"""
    batch_size: Annotated[int, Range(1, 65_536)] = 64
    """sequences per forward pass"""
    seed: Annotated[int, SeedRange] = 12345
    """seed of the test sequences"""
    example: Annotated[int, Range(0, 99_999)] = 0
    """which test sequence the top panel shows"""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads"""
    out: Path = Path("ngram_figure.png")
    """the figure (.png)"""
    json_out: Path | None = None
    """also write the table and the per-step curves as JSON here"""
    overwrite: bool = False
    """let --out / --json-out replace an existing file that heed did not write"""


@torch.no_grad()
def step_predictions(model: torch.nn.Module, batches: list) -> np.ndarray:
    """P(next bit = 1) of ``model`` for every target step: ``[S, T]`` over all batches."""
    out = []
    for batch in batches:
        logits, _, _ = model(torch.as_tensor(batch.inputs))
        out.append(torch.sigmoid(logits[..., 0]).double().numpy())
    return np.concatenate(out)


def step_costs(p_one: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Bits ``-log2 P(target)`` per step ``[S, T]``, zero where ``mask`` is 0 (as the training loss)."""
    p = np.clip(np.where(targets == 1, p_one, 1.0 - p_one), 1e-12, 1.0)
    return -np.log2(p) * mask


def main(cfg: Config) -> dict:
    """Print the table, draw the figure; return the table and curves."""
    validate(cfg)
    require(len(cfg.checkpoints) > 0, "--checkpoints needs at least one dynamic-ngrams model")
    require(cfg.out.suffix.lower() == ".png", f"--out must end in .png, got '{cfg.out}'")
    require(cfg.example < cfg.sequences, f"--example {cfg.example} is not below --sequences {cfg.sequences}")
    torch.set_num_threads(cfg.threads)
    models, task = {}, None
    for path in cfg.checkpoints:
        model, this_task, ckpt = su.load_sequence_model(str(path))
        if not isinstance(this_task, DynamicNGramsTask):
            raise HeedError(f"'{path}' was trained on '{ckpt.meta['task']}', not dynamic-ngrams")
        if task is not None and this_task != task:
            raise HeedError(f"'{path}' was trained on {this_task}, the first checkpoint on {task}: compare like with like")
        task = this_task
        name = su.model_config_from_meta(ckpt.meta).name
        while name in models:
            name += "'"
        models[name] = model
    out = claim_output_file(cfg.out, cfg.overwrite, "--out")
    json_out = claim_output_file(cfg.json_out, cfg.overwrite, "--json-out") if cfg.json_out is not None else None

    batches = su.fixed_batches(task, cfg.sequences, cfg.batch_size, cfg.seed)
    targets = np.concatenate([b.targets[..., 0] for b in batches]).astype(np.int64)  # [S, T]
    mask = np.concatenate([b.mask for b in batches])
    bits = np.concatenate([np.concatenate([b.inputs[:, :1, 0], b.targets[..., 0]], axis=1) for b in batches]).astype(np.int64)
    bayes = ngram_bayes_predictions(bits, task.order)[:, 1:]  # aligned with the targets
    bayes_cost = step_costs(bayes, targets, mask)
    predictions, excess, table = {"Bayes-optimal": bayes[cfg.example]}, {}, []
    scored = mask.mean(0) > 0
    print(f"{'predictor':>16}  {'bits / sequence':>15}  {'above Bayes':>11}")
    print(f"{'Bayes-optimal':>16}  {bayes_cost.sum(1).mean():>15.3f}  {0.0:>11.3f}")
    for name, model in models.items():
        p = step_predictions(model, batches)
        cost = step_costs(p, targets, mask)
        predictions[name] = p[cfg.example]
        excess[name] = np.where(scored, (cost - bayes_cost).mean(0), np.nan)
        row = {"model": name, "bits_per_sequence": float(cost.sum(1).mean()),
               "above_bayes": float((cost - bayes_cost).sum(1).mean())}
        table.append(row)
        print(f"{name:>16}  {row['bits_per_sequence']:>15.3f}  {row['above_bayes']:>11.3f}")
    title = f"dynamic {task.order}-grams, {cfg.sequences} fresh sequences (seed {cfg.seed})"
    with disk_errors(out):
        ngram_figure(targets[cfg.example], predictions, excess, out, title=title)
    result = {
        "bayes_bits_per_sequence": float(bayes_cost.sum(1).mean()), "models": table,
        "checkpoints": [str(p) for p in cfg.checkpoints], "sequences": cfg.sequences, "seed": cfg.seed,
        "excess_bits_per_step": {k: [None if np.isnan(v) else float(v) for v in values] for k, values in excess.items()},
    }
    if json_out is not None:
        with disk_errors(json_out):
            json_out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="ngram_figure.py", description=__doc__)))
