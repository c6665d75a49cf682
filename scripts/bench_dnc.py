"""Training speed of heed's DNC against the `dnc` package (ixaxaar/pytorch-dnc) on the same input.

    python scripts/bench_dnc.py --reference /tmp/dnc-deps --before /tmp/before

Every contender trains on 200-step dynamic n-gram sequences (batch ``--batch-size``, one bit in,
one bit out, BCE on every step, Adam 1e-3, gradient norm clipped to 50) in this one process, one
thread, in alternating windows of ``--window-seconds`` CPU seconds (``time.process_time``), as
``scripts/bench_ntm.py`` does. Sizes: LSTM controller 100, memory 32 x 20, 2 read heads, 1 write
head (heed's ``model:dnc`` defaults). The `dnc` package gets the same sizes (one LSTM layer,
``nr_cells=32, cell_size=20, read_heads=2``; it always has one write head) and its own output layer.

The reference is not part of heed and is never installed into it: ``pip install --target DIR dnc
--no-deps`` and pass ``--reference DIR`` (its sparse variants' imports, faiss and pyflann, are only
needed by the classes not timed here). ``--before DIR`` adds heed's DNC as it was before the
speed-up (``git show 50859c9:agents/cores/dnc.py > DIR/dnc.py``, same for ``addressing.py``).
``--compile`` adds heed's DNC compiled (:func:`heed.agents.cores.base.compile_step`, as
``heed train supervised --compile``), one contender per ``--compile-steps K`` (time steps per
compiled graph), compiled before the windows, its CPU time reported on its own.

The DNC of the graph runs, on graph-traversal inputs (92 channels, lesson 3), without the reference:

    python scripts/bench_dnc.py --task graph-traversal --task-options lesson=3 --batch-size 16 --compile \
        --model.hidden-size 64 --model.memory-size 64 --model.memory-width 32 --model.read-heads 1
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.cores.base import STEPS_PER_GRAPH
from heed.agents.cores.dnc import DNCConfig
from heed.agents.trainers import sequence_utils as su
from heed.scripts.bench_ntm import Heed, load_before, race

TASK = "dynamic-ngrams"


@dataclass(frozen=True)
class Config:
    """heed DNC (after, and before the speed-up) vs the `dnc` package, sequences/s side by side."""

    reference: Path | None = None
    """a folder with the `dnc` package (pip install --target DIR dnc --no-deps); None: leave it out"""
    before: Path | None = None
    """a folder with dnc.py and addressing.py as they were before the speed-up"""
    task: Literal["dynamic-ngrams", "graph-traversal"] = TASK
    """the task every contender trains on (the reference needs as many outputs as inputs: n-grams only)"""
    task_options: str = ""
    """task options, key=value,key=value (e.g. lesson=3)"""
    model: DNCConfig = field(default_factory=DNCConfig)
    """heed's DNC sizes (--model.hidden-size ...; the reference and 'before' get the same)"""
    compile: bool = False
    """also time heed's DNC compiled (compile time reported apart)"""
    compile_steps: Annotated[tuple[int, ...], Range(1, 16)] = (STEPS_PER_GRAPH,)
    """with --compile: time steps per compiled graph, one contender per value (e.g. 1 4 8)"""
    warmup_steps: Annotated[int, Range(1, 1000)] = 1
    """untimed training steps per contender before the windows"""
    batch_size: Annotated[int, Range(1, 4096)] = 32
    """sequences per training step, for every contender"""
    window_seconds: Annotated[float, Range(0, 3600, lo_open=True)] = 5.0
    """CPU seconds per window"""
    windows: Annotated[int, Range(1, 1000)] = 3
    """windows per contender"""
    seed: Annotated[int, SeedRange] = 0
    """seed for all"""
    json_out: Path | None = None
    """also write the results as JSON here"""
    overwrite: bool = False
    """let --json-out replace an existing file that heed did not write"""


def load_reference(folder: Path) -> type:
    """The `dnc` package's ``DNC`` class from ``folder``; HeedError when it is not there."""
    if not (Path(folder) / "dnc" / "dnc.py").exists():
        raise HeedError(f"no `dnc` package in '{folder}': pip install --target {folder} dnc --no-deps")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        from dnc import DNC
    except ImportError as exc:
        raise HeedError(f"the `dnc` package in '{folder}' does not import: {exc}") from None
    return DNC


class Reference:
    """The `dnc` package's DNC trained by the same step as heed's (its output layer gives the logits)."""

    def __init__(self, dnc_class: type, batch_size: int, seed: int, d: DNCConfig | None = None) -> None:
        torch.manual_seed(seed)
        d = DNCConfig() if d is None else d
        self.task = su.build_task(TASK, {})
        self.model = dnc_class(
            input_size=self.task.input_size, hidden_size=d.hidden_size, rnn_type="lstm", num_layers=1,
            num_hidden_layers=1, nr_cells=d.memory_size, cell_size=d.memory_width, read_heads=d.read_heads,
            batch_first=True, gpu_id=-1, clip=d.clip,
        )
        if self.task.input_size != self.task.output_size:
            raise HeedError(f"the `dnc` package's output has the input's width; {TASK} must have as many outputs")
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.rng, self.batch_size = np.random.default_rng(seed), batch_size

    def step(self) -> int:
        batch = self.task.sample(self.batch_size, self.rng)
        inputs, targets, mask = su.batch_to_tensors(batch, self.task.loss, torch.device("cpu"))
        logits, _ = self.model(inputs, (None, None, None), reset_experience=True)
        loss, _ = su.sequence_loss(logits, targets, mask, self.task.loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 50.0)
        self.opt.step()
        return self.batch_size


def main(cfg: Config) -> dict:
    """Run the alternating windows; print a markdown table; return the results."""
    validate(cfg)
    if cfg.reference is not None and cfg.task != TASK:
        raise HeedError(f"the `dnc` package runs only on {TASK} here (--reference None for {cfg.task})")
    reference = load_reference(cfg.reference) if cfg.reference is not None else None
    before = load_before(cfg.before, "dnc.py", "DNCCore") if cfg.before is not None else None
    json_out = claim_output_file(cfg.json_out, cfg.overwrite, "--json-out") if cfg.json_out is not None else None
    torch.set_num_threads(1)
    b, m, options = cfg.batch_size, cfg.model, su.parse_options(cfg.task_options, "task-options")
    contenders: dict[str, Any] = {}
    if reference is not None:
        contenders[f"dnc package (pytorch-dnc), batch {b}"] = Reference(reference, b, cfg.seed, m)
    if before is not None:
        contenders[f"heed DNC before, batch {b}"] = Heed(b, cfg.seed, cfg.task, m, core_class=before,
                                                         task_options=options)
    contenders[f"heed DNC, batch {b}"] = Heed(b, cfg.seed, cfg.task, m, task_options=options)
    for k in cfg.compile_steps if cfg.compile else ():
        contenders[f"heed DNC compiled, {k} steps per graph, batch {b}"] = Heed(
            b, cfg.seed, cfg.task, m, compile_steps=k, task_options=options)
    rows = race(contenders, cfg.windows, cfg.window_seconds, cfg.warmup_steps, base=next(iter(contenders)))
    result = {"config": {k: str(v) for k, v in vars(cfg).items()}, "rows": rows, "torch": torch.__version__}
    if json_out is not None:
        with disk_errors(json_out):
            json_out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="bench_dnc.py", description=__doc__)))
