"""The sweep's overhead: ``heed sweep --jobs 2`` of 8 short trials against the same 8 commands by hand.

    heed bench-sweep --rounds 3 --out /tmp/bench_sweep.json

(a) ``heed sweep --trainer supervised --seeds 1..8 --jobs 2 -- OPTIONS`` as one subprocess; (b) the
very same 8 trainer commands (``heed.agents.sweep.trial_args``: same seeds, one thread, no progress
bar), started by hand two at a time, each pair waited for before the next (``subprocess.Popen``), each
in its own session as from its own terminal (the sweep starts each trial so too: with Linux's
scheduler autogroups, two runs sharing one session get one session's share of a loaded machine).
The two alternate A, B, A, B, ... for ``--rounds`` rounds, each in fresh folders, so that a change
in the machine's load hits both. Per run: the wall time and the CPU time (user + system) of all its
child processes (``resource.getrusage(RUSAGE_CHILDREN)``, which counts every process the child
waited for, i.e. the trainers too). The CPU-time ratio A / B is robust to other jobs on the machine;
the wall ratio is what a user waits for, and is fair only on an otherwise idle machine. Reported:
the median over rounds of each ratio (the target: wall within 10 %, ratio <= 1.10).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, validate

#: one short supervised trial (copy, an LSTM of 32 units; about 10 CPU seconds with the imports)
TRIAL_OPTIONS = ("--task", "copy", "--task-options", "max_len=5", "--batch-size", "16", "--eval-every", "2000",
                 "--eval-sequences", "64", "--image-every", "0", "model:lstm", "--model.hidden-size", "32")


@dataclass(frozen=True)
class Config:
    """Time a 2-job sweep of short trials against the same trials started by hand two at a time."""

    trials: Annotated[int, Range(2, 64)] = 8
    """trials per run (seeds 1..N)"""
    jobs: Annotated[int, Range(1, 64)] = 2
    """trials at once, in both arms"""
    sequences: Annotated[int, Range(8, 10_000_000)] = 24000
    """training sequences per trial (sets its length)"""
    rounds: Annotated[int, Range(1, 100)] = 3
    """A-B rounds (sweep, then by hand, alternating)"""
    work_dir: Path | None = None
    """where the trial folders go, kept afterwards; its sweepN/handN folders must not exist yet (default: a
    temporary folder this run makes and removes afterwards)"""
    out: Path | None = None
    """write the per-run times and the ratios as JSON here"""
    overwrite: bool = False
    """replace --out when heed did not write it"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(run, cfg: Config, folder: Path) -> tuple[float, float]:
    """``run(cfg, folder)``'s wall seconds and the CPU seconds of the processes it started and waited for."""
    cpu, wall = _children_cpu(), time.perf_counter()
    run(cfg, folder)
    return time.perf_counter() - wall, _children_cpu() - cpu


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def by_sweep(cfg: Config, folder: Path) -> None:
    """Arm A: one ``heed sweep`` process running the trials ``jobs`` at a time."""
    command = [sys.executable, "-m", "heed.scripts.sweep", "--trainer", "supervised", "--jobs", str(cfg.jobs),
               "--seeds", *map(str, range(1, cfg.trials + 1)), "--sweep-dir", str(folder), "--",
               "--total-sequences", str(cfg.sequences), *TRIAL_OPTIONS]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True)
    require(done.returncode == 0, f"the sweep failed: {done.stderr.strip().splitlines()[-1:]}")


def by_hand(cfg: Config, folder: Path) -> None:
    """Arm B: the sweep's own trainer commands, ``jobs`` started together, each group waited for."""
    from heed.agents import sweep

    trials = sweep.expand("supervised", list(range(1, cfg.trials + 1)),
                          ["--total-sequences", str(cfg.sequences), *TRIAL_OPTIONS], [], folder)
    folder.mkdir(parents=True)
    for start in range(0, len(trials), cfg.jobs):
        procs = [subprocess.Popen([sys.executable, "-m", "heed.scripts.train", "supervised",
                                   *sweep.trial_args(t, resume=False)], env=_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
                 for t in trials[start:start + cfg.jobs]]
        codes = [p.wait() for p in procs]
        require(codes == [0] * len(procs), f"a hand-started trial failed (exit codes {codes})")


def main(cfg: Config) -> dict:
    """Run the rounds; print and return the times and the median ratios (sweep / by hand)."""
    validate(cfg)
    out = claim_output_file(cfg.out, cfg.overwrite) if cfg.out is not None else None
    made_root = cfg.work_dir is None  # only a folder this run made itself is removed afterwards
    root = Path(tempfile.mkdtemp(prefix="heed-bench-sweep-")) if made_root else cfg.work_dir
    taken = [root / f"{arm}{r}" for r in range(cfg.rounds) for arm in ("sweep", "hand") if (root / f"{arm}{r}").exists()]
    if taken:
        raise HeedError(f"--work-dir already holds {taken[0]}: give a new or empty folder (nothing there is touched)")
    runs = []
    try:
        for r in range(cfg.rounds):
            for arm, run in (("sweep", by_sweep), ("hand", by_hand)):
                wall, cpu = _timed(run, cfg, root / f"{arm}{r}")
                runs.append({"round": r, "arm": arm, "wall_s": wall, "cpu_s": cpu})
                print(f"round {r} {arm:>5}: wall {wall:7.1f} s, CPU {cpu:7.1f} s", flush=True)
    finally:
        if made_root:
            shutil.rmtree(root, ignore_errors=True)
    ratios = {key: float(np.median([a[key] / b[key] for a, b in zip(runs[0::2], runs[1::2])])) for key in ("wall_s", "cpu_s")}
    summary = {"trials": cfg.trials, "jobs": cfg.jobs, "sequences": cfg.sequences, "rounds": cfg.rounds,
               "load_average": os.getloadavg(), "runs": runs, "median_wall_ratio": ratios["wall_s"],
               "median_cpu_ratio": ratios["cpu_s"]}
    print(f"sweep / by hand, median of {cfg.rounds} rounds: wall {ratios['wall_s']:.3f}, CPU {ratios['cpu_s']:.3f} "
          f"(target: wall <= 1.10)")
    if out is not None:
        with disk_errors(out):
            out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, args=sys.argv[1:], prog="heed bench-sweep", description=__doc__)))
