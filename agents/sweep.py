"""Sweeps: many ordinary heed runs over seeds x trainer options, each in its own folder.

A trial is ``python -m heed.scripts.train KIND --seed S --run-dir DIR [options]``: the sweep treats
trainer options as opaque argument lists and checks them with the trainer's own parser before
anything starts. A grid is a list of axes; an axis is a list of alternatives, each a list of
arguments. Written as text (``--grid`` on the command line, ``grid = [...]`` in a TOML file), an
axis is either

- ``NAME=V1,V2,...``: the alternatives ``--NAME V1``, ``--NAME V2``, ...; or
- ``ALT1 | ALT2 | ...``: whole argument strings (shell-split), e.g.
  ``core:ntm --core.memory-size 16 | core:lstm``.

The trials are the product seeds x axis 1 x axis 2 ...; a trial's folder is named by its options
and seed (``learning-rate=0.001__core=lstm__seed=1``), and its *group* (the name without the seed)
is what :mod:`heed.scripts.aggregate` pools over seeds. The trial folder is the trainer's alone (a
trainer refuses to start in a folder holding files it did not make): the sweep keeps its own record
of each trial beside it, ``SWEEP_DIR/trials/NAME.json`` (status, attempts, command), and the
trainer's output in ``SWEEP_DIR/logs/NAME.log``. The rules, shared by every backend through
:func:`run_trial`:

- a trial whose record says ``done`` is skipped;
- a trial with a checkpoint is resumed (``--resume DIR``); one without is started afresh;
- a failed trial is retried up to ``retries`` times, except for bad input (exit code 2).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import io
import itertools
import json
import math
import os
import platform
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import redirect_stderr, redirect_stdout
from importlib import metadata
from pathlib import Path
from typing import Any

from heed.agents.common.checkpoint import latest_checkpoint, write_json_atomic
from heed.agents.common.errors import HeedError, require, suggest
from heed.agents.trainers import TRAINERS

#: flags the sweep sets itself for every trial
RESERVED = ("--seed", "--run-dir", "--resume", "--threads")
#: exit code of a trainer refusing its input (HeedError): retrying cannot help
BAD_INPUT = 2
#: exit code of a trainer stopped by Ctrl-C after writing its checkpoint
INTERRUPTED = 130
SWEEP_JSON, RECORDS, LOGS = "sweep.json", "trials", "logs"
PACKAGES = ("heed-attention", "torch", "numpy", "gymnasium", "ale-py", "stable-baselines3", "tyro", "tensorboard")


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of a sweep: ``args`` are the trainer options without ``--seed`` and ``--run-dir``."""

    trainer: str
    group: str
    seed: int
    args: tuple[str, ...]
    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def record_path(self) -> Path:
        """The sweep's record of this trial: ``SWEEP_DIR/trials/NAME.json``."""
        return self.dir.parent / RECORDS / f"{self.name}.json"

    @property
    def log_path(self) -> Path:
        """The trainer's output, every attempt: ``SWEEP_DIR/logs/NAME.log``."""
        return self.dir.parent / LOGS / f"{self.name}.log"


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A continuous axis of a random search, ``NAME=log:LOW..HIGH`` (log-uniform), ``NAME=uniform:LOW..HIGH``
    or ``NAME=int:LOW..HIGH`` (an integer, both ends included). A drawn value is written with 3
    significant digits, so a trial's folder name (and hence resuming it) does not depend on float noise."""

    flag: str
    kind: str
    low: float
    high: float

    def sample(self, rng: random.Random) -> list[str]:
        """One alternative, ``[flag, value]``: ``log`` draws ``exp(U(log low, log high))``."""
        if self.kind == "int":
            return self.alternative(rng.randint(int(self.low), int(self.high)))
        if self.kind == "log":
            return self.alternative(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.alternative(rng.uniform(self.low, self.high))

    def alternative(self, value: float) -> list[str]:
        """The trainer arguments for a value of this axis, ``[flag, text]``: an integer, or 3 significant digits."""
        return [self.flag, str(int(value)) if self.kind == "int" else f"{value:.3g}"]


Axis = list[list[str]] | Distribution
_DISTRIBUTION = re.compile(r"(log|uniform|int):(.+?)\.\.(.+)")


def parse_axis(text: str) -> Axis:
    """One axis from its text form: ``NAME=V1,V2`` or ``ALT1 | ALT2`` (its alternatives; a single
    ``model:NAME --opt V`` or ``--flag V`` argument list is one alternative), or a random
    search's ``NAME=log:LOW..HIGH`` / ``uniform:`` / ``int:`` (a :class:`Distribution`)."""
    text = text.strip()
    if "|" in text or text.startswith(("model:", "-")) and "=" not in text.split()[0]:
        alternatives = [shlex.split(part) for part in text.split("|")]  # one or more argument lists
    else:
        match = re.fullmatch(r"-{0,2}([A-Za-z][\w.-]*)=(.+)", text)
        require(match is not None, f"grid axis '{text}': write NAME=V1,V2, 'ALT1 | ALT2' or NAME=log:LOW..HIGH")
        name, values = match.groups()
        dist = _DISTRIBUTION.fullmatch(values.strip())
        if dist is not None:
            kind, low_text, high_text = dist.groups()
            try:
                low, high = float(low_text), float(high_text)
            except ValueError:
                raise HeedError(f"axis '{text}': LOW and HIGH must be numbers") from None
            require(math.isfinite(low) and math.isfinite(high) and low < high, f"axis '{text}': needs LOW < HIGH, both finite")
            require(kind != "log" or low > 0, f"axis '{text}': a log-uniform range needs LOW > 0")
            require(kind != "int" or (low.is_integer() and high.is_integer()), f"axis '{text}': int ranges take whole numbers")
            return Distribution(f"--{name}", kind, low, high)
        alternatives = [[f"--{name}", value.strip()] for value in values.split(",")]
    require(all(alternatives), f"grid axis '{text}' has an empty alternative")
    require(len({tuple(a) for a in alternatives}) == len(alternatives), f"grid axis '{text}' repeats an alternative")
    return alternatives


def combinations(axes: list[Axis], search: str, samples: int, search_seed: int) -> list[tuple[list[str], ...]]:
    """The configurations of a sweep: the full product of the axes (``grid``), or ``samples`` distinct
    draws, each axis independently and uniformly (``random``; the same ``search_seed`` draws the same
    configurations, so a re-run resumes the same trials)."""
    if search == "grid":
        require(not any(isinstance(a, Distribution) for a in axes),
                "a NAME=log:/uniform:/int: axis needs --search random (a grid cannot list a continuous range)")
        return list(itertools.product(*axes))
    require(search == "random", f"unknown search '{search}': grid or random")
    require(samples > 0, "--search random needs --samples N (how many configurations to draw)")
    finite = math.prod(len(a) for a in axes if not isinstance(a, Distribution))
    if all(not isinstance(a, Distribution) for a in axes):
        require(samples <= finite, f"--samples {samples} is more than the {finite} distinct configurations of these axes")
    rng = random.Random(search_seed)
    drawn: dict[tuple, tuple[list[str], ...]] = {}
    for _ in range(samples * 100):
        if len(drawn) == samples:
            break
        combo = tuple(a.sample(rng) if isinstance(a, Distribution) else rng.choice(a) for a in axes)
        drawn.setdefault(tuple(tuple(alt) for alt in combo), combo)
    require(len(drawn) == samples, f"could draw only {len(drawn)} distinct configurations of {samples}: widen the ranges")
    return list(drawn.values())


def slug(args: list[str] | tuple[str, ...]) -> str:
    """A folder-safe name for an argument list: ``['--lr', '0.1', 'core:ntm']`` -> ``lr=0.1_core-ntm``."""
    parts, i = [], 0
    while i < len(args):
        token = args[i]
        if token.startswith("-") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            parts.append(f"{token.lstrip('-')}={args[i + 1]}")
            i += 2
        else:
            parts.append(token.lstrip("-"))
            i += 1
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts))


def expand(trainer: str, seeds: list[int], options: list[str], grid: list[str], sweep_dir: Path,
           search: str = "grid", samples: int = 0, search_seed: int = 0) -> list[Trial]:
    """Every trial of the sweep: seeds x the configurations of the axes (:func:`combinations`), with
    ``options`` shared by all."""
    axes = parse_axes(trainer, seeds, options, grid)
    trials = [t for combo in combinations(axes, search, samples, search_seed)
              for t in trials_of(trainer, combo, seeds, options, sweep_dir)]
    require(len({t.dir for t in trials}) == len(trials), "two grid combinations give the same folder name")
    return trials


def parse_axes(trainer: str, seeds: list[int], options: list[str], grid: list[str]) -> list[Axis]:
    """The axes of a sweep, with its trainer, seeds and shared options checked (no flag the sweep sets)."""
    require(trainer in TRAINERS, f"unknown trainer '{trainer}'.{suggest(trainer, TRAINERS)}")
    require(len(seeds) > 0 and len(set(seeds)) == len(seeds), "--seeds must list distinct seeds")
    axes = [parse_axis(axis) for axis in grid]
    flags = [[a.flag] if isinstance(a, Distribution) else [t for alt in a for t in alt] for a in axes]
    for token in (*options, *(t for axis in flags for t in axis)):
        flag = token.split("=")[0]
        require(flag not in RESERVED, f"{flag} is set by the sweep for every trial; leave it out of the options")
    return axes


def trials_of(trainer: str, combo: tuple[list[str], ...], seeds: list[int], options: list[str],
              sweep_dir: Path) -> list[Trial]:
    """The trials of one configuration (one alternative per axis), one per seed; its group names its options."""
    group = "__".join(slug(alt) for alt in combo) or "base"
    args = order_options([options, *combo])
    return [Trial(trainer, group, seed, args, sweep_dir / f"{group}__seed={seed}") for seed in seeds]


def _one_line(text: str) -> str:
    """A parser's boxed, wrapped error output as one line: its first two paragraphs after the title."""
    blocks: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = raw.strip().strip("│|╭╰╮╯").strip()
        if set(line) <= set("─-╭╰╮╯ "):  # a separator or the box's edge: a new paragraph
            blocks.append([])
        elif line:
            blocks[-1].append(line)
    paragraphs = [" ".join(b) for b in blocks if b and "full helptext" not in " ".join(b)]
    if len(paragraphs) > 1 and len(paragraphs[0]) < 60 and paragraphs[1].startswith(paragraphs[0].strip("─- ")):
        paragraphs = paragraphs[1:]  # the box title repeats the message's first words
    if len(paragraphs) > 1 and len(paragraphs[1]) > 160:
        paragraphs[1] = paragraphs[1][:157] + "..."
    return "; ".join(paragraphs[:2]) or "the trainer's parser refused them"


def validate(trials: list[Trial]) -> None:
    """Parse every trial's options with its trainer's own parser; one clear line for the first bad one."""
    import tyro

    for trial in trials:
        module = importlib.import_module(TRAINERS[trial.trainer][0])
        err = io.StringIO()
        try:
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                tyro.cli(module.Config, args=list(trial_args(trial, resume=False)), prog=f"train {trial.trainer}")
        except SystemExit:
            options = shlex.join(trial.args)
            raise HeedError(f"invalid {trial.trainer} options for trial {trial.name} ({options}): {_one_line(err.getvalue())}") from None


def is_subcommand(token: str) -> bool:
    """A tyro subcommand token such as ``model:ntm`` (its own options follow it)."""
    return re.fullmatch(r"[A-Za-z][\w-]*:[A-Za-z0-9][\w.-]*", token) is not None


def order_options(groups: list[list[str]] | list[tuple[str, ...]]) -> tuple[str, ...]:
    """Join argument groups so that every trainer option precedes the first subcommand.

    tyro reads a trainer's own options only before a subcommand (``--task copy model:ntm
    --model.memory-size 16``): each group is cut at its first subcommand token, the heads come
    first in order, then the tails in order.
    """
    heads, tails = [], []
    for group in groups:
        cut = next((i for i, token in enumerate(group) if is_subcommand(token)), len(group))
        heads += group[:cut]
        tails += group[cut:]
    return (*heads, *tails)


def trial_args(trial: Trial, resume: bool) -> tuple[str, ...]:
    """The trainer arguments of a trial: the sweep's flags first, then its options."""
    config = importlib.import_module(TRAINERS[trial.trainer][0]).Config
    fields = {f.name for f in dataclasses.fields(config)}
    if "run" in fields:  # the shared run flags (RunConfig), nested without a prefix
        fields |= {f.name for f in dataclasses.fields(next(f for f in dataclasses.fields(config) if f.name == "run").default_factory())}
    flags = ["--seed", str(trial.seed), "--resume" if resume else "--run-dir", str(trial.dir)]
    if "threads" in fields:
        flags += ["--threads", "1"]
    if "progress" in fields:
        flags.append("--no-progress")
    return (*flags, *trial.args)


def trial_record(trial: Trial) -> dict[str, Any]:
    """The sweep's record of the trial (empty when it has never started)."""
    return json.loads(trial.record_path.read_text()) if trial.record_path.exists() else {}


def is_done(trial: Trial) -> bool:
    return trial_record(trial).get("status") == "done"


#: what a heed run writes before its first checkpoint (a trial killed that early leaves only these)
_EARLY_RUN_FILES = ("config.json", "run.json", "metrics.jsonl", "events.out.tfevents.*")


def _fresh_dir(trial: Trial) -> None:
    """Clear a folder this sweep started for the trial that was killed before its first checkpoint.

    Only when the sweep's own record says it started the trial, and only the files a run writes
    before its first checkpoint (then the emptied folders); a folder holding anything else is left
    alone, and the trainer's run-folder guard refuses it with one line.
    """
    if not trial.record_path.is_file() or not trial.dir.is_dir() or trial.dir.is_symlink():
        return
    ckpts = trial.dir / "checkpoints"
    files = [p for p in trial.dir.iterdir() if p != ckpts]
    early = all(p.is_file() and not p.is_symlink() and any(fnmatch.fnmatchcase(p.name, pat) for pat in _EARLY_RUN_FILES)
                for p in files)
    if not early or (ckpts.exists() and (ckpts.is_symlink() or not ckpts.is_dir() or any(ckpts.iterdir()))):
        return
    for p in files:
        p.unlink()
    if ckpts.exists():
        ckpts.rmdir()
    trial.dir.rmdir()


def run_trial(
    trial: Trial, retries: int = 1, running: dict | None = None, stop: threading.Event | None = None
) -> dict[str, Any]:
    """Run one trial to the end (skip, resume, bounded retries); return its final record.

    ``running``, when given, maps the trial's name to its live ``Popen`` so that a caller can
    forward Ctrl-C to it; once ``stop`` is set no attempt starts and a starting one is interrupted.
    Status ends as ``done``, ``failed`` or ``interrupted``.
    """
    record = trial_record(trial)
    if record.get("status") == "done":
        return record
    record = {"trainer": trial.trainer, "group": trial.group, "seed": trial.seed, "dir": trial.name,
              "args": list(trial.args),
              "attempts": record.get("attempts", 0), "seconds": record.get("seconds", 0.0)}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for _ in range(retries + 1):
        if stop is not None and stop.is_set():
            record["status"] = "interrupted"
            break
        resume = latest_checkpoint(trial.dir) is not None
        if not resume:
            _fresh_dir(trial)
        command = [sys.executable, "-m", "heed.scripts.train", trial.trainer, *trial_args(trial, resume)]
        record.update(status="running", resumed=resume, command="heed train " + shlex.join(command[3:]))
        trial.record_path.parent.mkdir(parents=True, exist_ok=True)
        trial.log_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(trial.record_path, record)
        start = time.perf_counter()
        with open(trial.log_path, "a") as log:
            log.write(f"$ {record['command']}\n")
            log.flush()
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            if running is not None:
                running[trial.name] = proc
            if stop is not None and stop.is_set():
                proc.send_signal(signal.SIGINT)
            code = proc.wait()
            if running is not None:
                running.pop(trial.name, None)
        record["seconds"] += time.perf_counter() - start
        record.update(returncode=code, attempts=record["attempts"] + 1)
        if code in (0, INTERRUPTED, -signal.SIGINT):
            record["status"] = "done" if code == 0 else "interrupted"
            break
        record["status"] = "failed"
        if code == BAD_INPUT:
            break
    if trial.record_path.parent.exists():
        write_json_atomic(trial.record_path, record)
    return record


def _git_revision() -> dict[str, Any]:
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(git("status", "--porcelain")) if commit else None}


def package_versions() -> dict[str, str | None]:
    """Python, the platform and the installed versions of heed's main dependencies."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_manifest(sweep_dir: Path, spec: dict[str, Any], trials: list[Trial]) -> Path:
    """Write ``sweep.json``: the grid, the trials, the git revision and package versions.

    A sweep folder holds one trainer; running again with more seeds or axes adds trials, and the
    previous manifests are kept under ``history``.
    """
    path = sweep_dir / SWEEP_JSON
    history: list[dict] = []
    if path.exists():
        old = json.loads(path.read_text())
        require(old.get("trainer") == spec["trainer"],
                f"'{sweep_dir}' holds a {old.get('trainer')} sweep; use another --sweep-dir for {spec['trainer']}")
        history = [*old.pop("history", []), old]
    manifest = {
        **spec, "git": _git_revision(), "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "trials": {t.name: {"group": t.group, "seed": t.seed, "args": list(t.args)} for t in trials},
        "history": history,
    }
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, manifest)
    return path


class Progress:
    """The one progress line: trials done / running / failed of the total, and an ETA.

    The ETA assumes the trials still to run take as long as those finished in this invocation,
    ``jobs`` at a time. On a terminal the line is rewritten in place; elsewhere a line per change.
    """

    def __init__(self, total: int, skipped: int, jobs: int, stream=None) -> None:
        self.total, self.done, self.failed, self.running, self.jobs = total, skipped, 0, 0, jobs
        self.durations: list[float] = []
        self.stream = stream
        self.start = time.perf_counter()

    def eta(self) -> str:
        if not self.durations:
            return "?"
        left = self.total - self.done - self.failed
        seconds = sum(self.durations) / len(self.durations) * left / max(self.jobs, 1)
        return time.strftime("%H:%M:%S", time.gmtime(seconds))

    def line(self) -> str:
        return (f"sweep: {self.done}/{self.total} done, {self.running} running, {self.failed} failed, "
                f"ETA {self.eta()}")

    def show(self) -> None:
        stream = self.stream or sys.stderr  # looked up late: Ray pickles this object with its callbacks
        tty = getattr(stream, "isatty", lambda: False)()
        stream.write(("\r" + self.line() + "\033[K") if tty else self.line() + "\n")
        stream.flush()

    def started(self) -> None:
        self.running += 1
        self.show()

    def finished(self, record: dict[str, Any], seconds: float) -> None:
        self.running -= 1
        if record.get("status") == "done":
            self.done += 1
            self.durations.append(seconds)
        elif record.get("status") == "failed":
            self.failed += 1
        self.show()


def default_jobs() -> int:
    """One trial per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class TrialPool:
    """``jobs`` threads, each running one trial at a time as a subprocess (:func:`run_trial`).

    :meth:`submit` starts a trial (call it while :meth:`idle`), :meth:`collect` returns the trials that
    finished, with their records. Leaving the ``with`` block on an exception (Ctrl-C, SIGTERM turned into
    Ctrl-C by the CLI, or an error) sends SIGINT to every running trial, so each writes its checkpoint,
    starts no further attempt and waits for them; the same command later resumes them.
    """

    def __init__(self, jobs: int, retries: int, progress: Progress) -> None:
        self.jobs, self.retries, self.progress = jobs, retries, progress
        self.running: dict[str, subprocess.Popen] = {}
        self.stop = threading.Event()
        self.pending: set = set()
        self.executor = ThreadPoolExecutor(max_workers=jobs)

    def __enter__(self) -> TrialPool:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            self.stop.set()
            for proc in list(self.running.values()):
                proc.send_signal(signal.SIGINT)
            wait(self.pending)
        self.executor.shutdown(wait=True)
        stream = self.progress.stream or sys.stderr
        if getattr(stream, "isatty", lambda: False)():
            stream.write("\n")

    def idle(self) -> bool:
        """Whether a thread is free for another trial."""
        return len(self.pending) < self.jobs

    def submit(self, trial: Trial) -> None:
        def work() -> tuple[Trial, dict, float]:
            start = time.perf_counter()
            return trial, run_trial(trial, self.retries, self.running, self.stop), time.perf_counter() - start

        self.pending.add(self.executor.submit(work))
        self.progress.started()

    def collect(self) -> list[tuple[Trial, dict[str, Any]]]:
        """Block until at least one running trial finishes; return the finished ones and their records."""
        finished, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
        out = []
        for future in finished:
            trial, record, seconds = future.result()
            self.progress.finished(record, seconds)
            out.append((trial, record))
        return out


def run_local(trials: list[Trial], jobs: int = 0, retries: int = 1, stream=None) -> list[dict[str, Any]]:
    """Run the trials ``jobs`` at a time (default: one per core) as subprocesses; return their records.

    Finished trials are skipped. On Ctrl-C every running trial writes its checkpoint (:class:`TrialPool`)
    and ``KeyboardInterrupt`` is raised again; the same command later resumes them.
    """
    jobs = jobs or default_jobs()
    todo = [t for t in trials if not is_done(t)]
    progress = Progress(len(trials), len(trials) - len(todo), jobs, stream)
    progress.show()
    records = {t.name: trial_record(t) for t in trials if t not in todo}
    with TrialPool(jobs, retries, progress) as pool:
        while todo or pool.pending:
            while todo and pool.idle():
                pool.submit(todo.pop(0))
            records.update((trial.name, record) for trial, record in pool.collect())
    return [records[t.name] for t in trials]
