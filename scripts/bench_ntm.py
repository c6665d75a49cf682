"""Training speed on the NTM paper's copy set-up: heed's NTM against loudinthecloud/pytorch-ntm,
and against heed's own NTM before the speed-up (issue 17).

    python scripts/bench_ntm.py --reference /tmp/pytorch-ntm --extra-path /tmp/pytorch-ntm-deps
    python scripts/bench_ntm.py --task dynamic-ngrams --reference None --before /tmp/before

Both train an NTM with an LSTM controller of 100 units, one read and one write head, memory 128 x 20,
on 8-bit copy sequences of length 1-20, in this one process, one thread, in alternating windows
of ``--window-seconds`` of CPU time (``time.process_time``), so both see the same machine load.
The reference runs its own ``train.train_batch`` (RMSProp 1e-4, BCE, gradients clipped to +-10) on
its own data loader at batch 1; heed runs its trainer's step (Adam 1e-3, norm clip 50) at batch 1
and at ``--batch-size``. Reported: training sequences per CPU second, median (min-max) over windows,
and the ratio of medians.

The reference is not part of heed and is never committed: bring a checkout (``git archive`` of
github.com/loudinthecloud/pytorch-ntm) and patch its ``tasks/*.py`` for current ``attrs``
(``convert=`` -> ``converter=``); its imports need ``attrs`` and ``argcomplete``
(``pip install --target DIR attrs argcomplete`` and pass ``--extra-path DIR``). It runs only on
copy; ``--reference None`` leaves it out.

``--before DIR`` adds heed's NTM as it was before the speed-up, loaded from a folder holding the old
``ntm.py`` and ``addressing.py`` (``git show 50859c9:agents/cores/ntm.py > DIR/ntm.py``, same for
``addressing.py``); ratios are then also given against it. ``--compile`` adds the fast NTM compiled
(:func:`heed.agents.cores.base.compile_step`, as ``heed train supervised --compile``), one contender
per ``--compile-steps K`` (time steps per compiled graph, e.g. ``--compile-steps 1 4 8``): each
compilation happens before the windows and its CPU time (the C++ compiler's included) is reported
on its own.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.cores import addressing
from heed.agents.cores.base import STEPS_PER_GRAPH, compile_step
from heed.agents.cores.ntm import NTMConfig
from heed.agents.parts import build_model
from heed.agents.sequence import RecurrentSequenceModel
from heed.agents.trainers import sequence_utils as su


@dataclass(frozen=True)
class Config:
    """heed NTM vs pytorch-ntm training sequences/s on copy, side by side."""

    reference: Path | None = Path("/tmp/pytorch-ntm")
    """path to a (patched) checkout of loudinthecloud/pytorch-ntm (copy only); None: leave it out"""
    extra_path: Path | None = None
    """a directory with attrs and argcomplete for the reference (pip install --target DIR attrs argcomplete)"""
    task: Literal["copy", "dynamic-ngrams"] = "copy"
    """the task heed trains on (the reference always runs its own copy task)"""
    before: Path | None = None
    """a folder with ntm.py and addressing.py as they were before the speed-up (a before/after row)"""
    compile: bool = False
    """also time the fast NTM compiled (compile time reported apart)"""
    compile_steps: Annotated[tuple[int, ...], Range(1, 16)] = (STEPS_PER_GRAPH,)
    """with --compile: time steps per compiled graph, one contender per value (e.g. 1 4 8)"""
    warmup_steps: Annotated[int, Range(1, 1000)] = 1
    """untimed training steps per contender before the windows"""
    batch_size: Annotated[int, Range(1, 4096)] = 32
    """heed's batch besides batch 1"""
    window_seconds: Annotated[float, Range(0, 3600, lo_open=True)] = 5.0
    """CPU seconds per window"""
    windows: Annotated[int, Range(1, 1000)] = 3
    """windows per contender"""
    seed: Annotated[int, SeedRange] = 0
    """seed for both"""
    json_out: Path | None = None
    """also write the results as JSON here"""
    overwrite: bool = False
    """let --json-out replace an existing file that heed did not write"""


def load_reference(cfg: Config):
    """Import the reference's copy-task model and ``train_batch``; HeedError when missing."""
    ref = Path(cfg.reference)
    if not (ref / "ntm" / "aio.py").exists() or not (ref / "train.py").exists():
        raise HeedError(
            f"no pytorch-ntm checkout at '{ref}': get github.com/loudinthecloud/pytorch-ntm there "
            "(see this script's docstring) and pass --reference PATH"
        )
    for path in (cfg.extra_path, ref):
        if path is not None and str(path) not in sys.path:
            sys.path.insert(0, str(path))
    try:
        import train as ref_train  # the reference's train.py
        from tasks.copytask import CopyTaskModelTraining, CopyTaskParams
    except ModuleNotFoundError as exc:
        raise HeedError(f"pytorch-ntm needs '{exc.name}': pip install --target DIR attrs argcomplete; --extra-path DIR") from None
    except TypeError as exc:
        raise HeedError(f"pytorch-ntm does not import with this attrs ({exc}): patch convert= to converter=") from None
    return ref_train, CopyTaskModelTraining, CopyTaskParams


@contextlib.contextmanager
def _swapped_addressing(module: ModuleType) -> Iterator[None]:
    """While old core files import ``heed.agents.cores.addressing``, hand them ``module`` instead."""
    package = sys.modules["heed.agents.cores"]
    saved = sys.modules["heed.agents.cores.addressing"]
    sys.modules["heed.agents.cores.addressing"], package.addressing = module, module
    try:
        yield
    finally:
        sys.modules["heed.agents.cores.addressing"], package.addressing = saved, saved


def _load_file(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_before(folder: Path, core_file: str, core_class: str) -> type:
    """The core class ``core_class`` from ``folder/core_file``, run with ``folder/addressing.py``.

    The old files stay as they were (they import heed's current base and validation modules);
    nothing of heed is replaced outside the import itself.
    """
    files = [Path(folder) / core_file, Path(folder) / "addressing.py"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise HeedError(
            f"--before folder lacks {', '.join(missing)}: git show 50859c9:agents/cores/FILE > {folder}/FILE "
            f"for {core_file} and addressing.py"
        )
    old_addressing = _load_file(files[1], "heed_before_addressing")
    with _swapped_addressing(old_addressing):
        module = _load_file(files[0], f"heed_before_{Path(core_file).stem}")
    assert addressing is sys.modules["heed.agents.cores.addressing"]
    return getattr(module, core_class)


class Heed:
    """heed's trainer step (the same operations as agents/trainers/supervised.py) on a task.

    ``core_class`` (default: the table's core for ``cfg``) lets the same step run an older core;
    ``compile_steps`` > 0 compiles the core here with that many time steps per graph
    (:func:`compile_step`), its CPU seconds in ``compile_seconds``.
    """

    def __init__(
        self, batch_size: int, seed: int, task: str = "copy", cfg: Any = None,
        core_class: Callable | None = None, compile_steps: int = 0, task_options: dict | None = None,
    ) -> None:
        torch.manual_seed(seed)
        cfg = NTMConfig() if cfg is None else cfg
        self.task = su.build_task(task, task_options or {})
        if core_class is None:
            self.model = build_model(cfg, self.task.input_size, self.task.output_size)
        else:
            self.model = RecurrentSequenceModel(core_class(self.task.input_size, cfg), self.task.output_size)
        self.compile_seconds = None
        if compile_steps:
            done = compile_step(self.model.core, batch_size, steps_per_graph=compile_steps)
            if done.failure is not None:
                raise HeedError(f"--compile failed: {done.failure}")
            self.compile_seconds = done.cpu_seconds
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.rng, self.batch_size = np.random.default_rng(seed), batch_size

    def step(self) -> int:
        batch = self.task.sample(self.batch_size, self.rng)
        inputs, targets, mask = su.batch_to_tensors(batch, self.task.loss, torch.device("cpu"))
        logits, _, aux = self.model(inputs)
        loss, _ = su.sequence_loss(logits, targets, mask, self.task.loss)
        self.opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 50.0)
        self.opt.step()
        return self.batch_size


class Reference:
    """pytorch-ntm's own training step at batch 1 on its own copy data loader."""

    def __init__(self, modules, seed: int) -> None:
        ref_train, CopyTaskModelTraining, CopyTaskParams = modules
        ref_train.init_seed(seed) if hasattr(ref_train, "init_seed") else torch.manual_seed(seed)
        self.train_batch = ref_train.train_batch
        self.model = CopyTaskModelTraining(params=CopyTaskParams(batch_size=1, num_batches=10**9))
        self.batches = iter(self.model.dataloader)

    def step(self) -> int:
        _, x, y = next(self.batches)
        self.train_batch(self.model.net, self.model.criterion, self.model.optimizer, x, y)
        return 1


def window(contender, seconds: float) -> float:
    """Train for ``seconds`` of CPU time; return sequences per CPU second."""
    start, done = time.process_time(), 0
    while time.process_time() - start < seconds:
        done += contender.step()
    return done / (time.process_time() - start)


def race(contenders: dict[str, Any], windows: int, seconds: float, warmup_steps: int, base: str) -> list[dict]:
    """Alternate CPU-time windows over the contenders; print a markdown table; return its rows.

    Each row has the median (min, max) sequences per CPU second and the median over windows of
    the per-round ratio to ``base`` (rounds alternate, so both saw the same load).
    """
    for c in contenders.values():  # warm up allocators, lazy imports (and compilation)
        for _ in range(warmup_steps):
            c.step()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(windows):
        for name, c in contenders.items():
            rates[name].append(window(c, seconds))
    rows = []
    print(f"| contender | sequences / CPU-s, median (min-max) | vs {base} (median of per-round ratios) |\n|-|-|-|")
    for name, values in rates.items():
        med = statistics.median(values)
        ratio = statistics.median(v / b for v, b in zip(values, rates[base]))
        rows.append({"contender": name, "median": med, "min": min(values), "max": max(values), "ratio": ratio,
                     "rates": values, "compile_cpu_seconds": getattr(contenders[name], "compile_seconds", None)})
        print(f"| {name} | {med:.1f} ({min(values):.1f}-{max(values):.1f}) | {ratio:.2f}x |")
    for row in rows:
        if row["compile_cpu_seconds"] is not None:
            print(f"{row['contender']}: compiled in {row['compile_cpu_seconds']:.1f} CPU-s (before the windows)")
    return rows


def main(cfg: Config) -> dict:
    """Run the alternating windows; print a markdown table; return the results."""
    validate(cfg)
    modules = load_reference(cfg) if cfg.reference is not None and cfg.task == "copy" else None
    before = load_before(cfg.before, "ntm.py", "NTMCore") if cfg.before is not None else None
    json_out = claim_output_file(cfg.json_out, cfg.overwrite, "--json-out") if cfg.json_out is not None else None
    torch.set_num_threads(1)
    contenders: dict[str, Any] = {}
    if modules is not None:
        contenders["pytorch-ntm, batch 1"] = Reference(modules, cfg.seed)
        contenders["heed, batch 1"] = Heed(1, cfg.seed, cfg.task)
    if before is not None:
        contenders[f"heed before, batch {cfg.batch_size}"] = Heed(cfg.batch_size, cfg.seed, cfg.task, core_class=before)
    contenders[f"heed, batch {cfg.batch_size}"] = Heed(cfg.batch_size, cfg.seed, cfg.task)
    for k in cfg.compile_steps if cfg.compile else ():
        contenders[f"heed compiled, {k} steps per graph, batch {cfg.batch_size}"] = Heed(
            cfg.batch_size, cfg.seed, cfg.task, compile_steps=k)
    base = next(iter(contenders))
    rows = race(contenders, cfg.windows, cfg.window_seconds, cfg.warmup_steps, base)
    result = {"config": {k: str(v) for k, v in vars(cfg).items()}, "rows": rows, "torch": torch.__version__}
    if json_out is not None:
        with disk_errors(json_out):
            json_out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="bench_ntm.py", description=__doc__)))
