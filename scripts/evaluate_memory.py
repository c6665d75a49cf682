"""Evaluate a trained sequence model at lengths beyond training: cost and bit-error rate per length.

    python scripts/evaluate_memory.py --checkpoint agents/pretrained/ntm-copy --lengths 10 20 30 50 80 120

``--checkpoint`` takes a run dir (its latest checkpoint), a checkpoint dir or shipped weights.
"Length" is the task's own length (copy/repeat-copy length, number of associative-recall items,
n-gram sequence length, vectors to sort). ``--export DIR`` also writes the weights as fp16
safetensors with the meta (how ``agents/pretrained/`` is made): a new or empty folder, or a heed
checkpoint folder; anything else there is refused, never emptied. ``--json-out`` replaces only a
file heed wrote (or any, with ``--overwrite``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import torch

from heed.agents.common.checkpoint import claim_export_dir, save_checkpoint
from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.trainers import sequence_utils as su

#: the longest test length and the most test sequences per length (the test batches are held in memory)
MAX_LENGTH = 10_000
MAX_SEQUENCES = 100_000


@dataclass(frozen=True)
class Config:
    """Cost and error rate of a trained sequence model per test length."""

    checkpoint: Path
    """run dir, checkpoint dir or shipped weights dir (e.g. agents/pretrained/ntm-copy)"""
    lengths: Annotated[tuple[int, ...], Range(1, MAX_LENGTH)] = field(default_factory=lambda: (10, 20, 30, 50, 80, 120))
    """test lengths"""
    sequences: Annotated[int, Range(1, MAX_SEQUENCES)] = 128
    """test sequences per length"""
    batch_size: Annotated[int, Range(1, 65_536)] = 32
    """sequences per forward pass"""
    seed: Annotated[int, SeedRange] = 12345
    """seed of the test sequences (length n uses seed + n)"""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads"""
    json_out: Path | None = None
    """also write the table as JSON here"""
    export: Path | None = None
    """write the model as fp16 safetensors + meta.json into this dir (new or empty; an existing checkpoint only with --overwrite)"""
    overwrite: bool = False
    """let --json-out replace an existing file that heed did not write, and --export an existing checkpoint"""


def main(cfg: Config) -> list[dict]:
    """Print one row per length; return the rows."""
    validate(cfg)
    if not cfg.lengths:
        raise HeedError("--lengths needs at least one length")
    torch.set_num_threads(cfg.threads)
    model, task, ckpt = su.load_sequence_model(str(cfg.checkpoint))
    json_out = claim_output_file(cfg.json_out, cfg.overwrite, "--json-out") if cfg.json_out is not None else None
    export = claim_export_dir(cfg.export, cfg.overwrite) if cfg.export is not None else None
    if not hasattr(task, "fixed_length"):
        raise HeedError(f"task '{ckpt.meta['task']}' has no fixed_length(): it cannot be tested per length")
    memory = getattr(getattr(model, "core", None), "memory_size", None)
    rows = []
    key = su.headline(task.loss)
    has_optimum = hasattr(task, "optimal_bits")
    print(f"{'length':>6}  {'cost (bits/seq)':>15}  {'bit errors/seq':>14}  {'error rate':>10}"
          + (f"  {'optimum (bits/seq)':>18}" if has_optimum else ""))
    for length in cfg.lengths:
        fixed = task.fixed_length(length)
        batches = su.fixed_batches(fixed, cfg.sequences, cfg.batch_size, cfg.seed + length)
        result = su.evaluate(model, fixed, batches)
        if task.loss == "bits":
            row = {
                "length": length, "bits_per_sequence": result["bits_per_sequence"],
                "bit_errors_per_sequence": result["bit_errors_per_sequence"], "bit_error_rate": result["bit_error_rate"],
            }
            optimum = su.optimal_cost(fixed, batches)
            if optimum is not None:
                row["optimal_bits_per_sequence"] = optimum
            print(f"{length:>6}  {row['bits_per_sequence']:>15.3f}  {row['bit_errors_per_sequence']:>14.3f}  "
                  f"{row['bit_error_rate']:>10.4%}" + (f"  {optimum:>18.3f}" if optimum is not None else ""))
        else:
            row = {"length": length, "cost_per_sequence": result["cost_per_sequence"], "error_rate": result[key]}
            print(f"{length:>6}  {row['cost_per_sequence']:>15.3f}  {'':>14}  {row['error_rate']:>10.4%}")
        rows.append(row)
    if memory is not None and max(cfg.lengths) > memory:
        print(f"note: lengths above the memory size ({memory}) overwrite earlier rows")
    if json_out is not None:
        with disk_errors(json_out):
            json_out.write_text(json.dumps(rows, indent=2))
    if export is not None:
        params = {name for name, _ in model.named_parameters()}  # buffers (memory_init) stay fp32
        tensors = {k: v.half() if k in params else v for k, v in model.state_dict().items()}
        meta = {k: v for k, v in ckpt.meta.items() if k not in ("optimizer", "rng")}
        save_checkpoint(export, tensors, meta)
        print(f"exported fp16 weights to {cfg.export}")
    return rows


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="evaluate_memory.py", description=__doc__)))
