"""One start/resume path for every trainer: :class:`RunConfig`, :func:`start_run` and :class:`Run`.

A trainer nests the shared run options in its own frozen tyro config, keeping the flat flags
(``--seed``, ``--device``, ``--threads``, ``--run-dir``, ``--resume``, ``--progress/--no-progress``,
``--compile``)::

    @dataclass(frozen=True)
    class Config:
        total_steps: Annotated[int | None, AtLeastOne, ResumeOverride] = None
        learning_rate: Annotated[float, Positive] = 1e-3
        run: RunFlags = field(default_factory=RunConfig)

    def main(cfg: Config) -> dict:
        run = start_run("ppo", cfg, name=cfg.env)          # guard, seed, threads, device, config.json
        cfg = run.cfg                                      # on --resume: the saved config + overrides
        ...build the model; if run.checkpoint: restore it...
        with run.interruptible(save):                      # Ctrl-C / SIGTERM: save, exit 130
            for step in ...:
                run.log_scalars("losses", {"loss": loss}, step)   # NaN/inf stops the run here
        run.finish({"eval/return": ret}, budget_flag="--total-steps")

**The override rule** (the only one): on ``--resume DIR`` every option comes from ``DIR/config.json``
(checked for types and ranges before use) except ``--device``, ``--threads``,
``--progress`` and ``--compile`` (taken from the command line) and the fields marked :data:`ResumeOverride`
(budgets and stop criteria), which are taken from the command line when given (when they differ
from the field's default). Any other option given with a value different from the saved one is
refused with one line, never dropped in silence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import sys
import time
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import numpy as np
import torch
import tyro

from heed.agents.common.checkpoint import (
    Checkpoint,
    checkpoint_meta,
    load_latest_checkpoint,
    save_run_checkpoint,
)
from heed.agents.common.device import resolve_device
from heed.agents.common.errors import HeedError
from heed.agents.common.guards import check_finite, interruptible
from heed.agents.common.run import (
    TAG_GROUPS,
    default_run_dir,
    flat_hparams,
    hparams_markdown,
    log_hparams,
    prepare_run_dir,
    save_config,
)
from heed.agents.common.safe_io import disk_errors, read_json_object, write_bytes_atomic, write_json_atomic
from heed.agents.common.validate import Range, SeedRange, config_from_dict, flag_name, validate

C = TypeVar("C")

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
#: RunConfig fields a resume always takes from the command line
RUNTIME_FIELDS = ("device", "threads", "progress", "compile")


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: mark a budget or stop-criterion field: ``Annotated[int | None, AtLeastOne, ResumeOverride]``
ResumeOverride = _Marker("ResumeOverride")


@dataclass(frozen=True)
class RunConfig:
    """Options every trainer shares (nested with :data:`RunFlags`, so the flags stay flat)."""

    seed: Annotated[int, SeedRange] = 1
    """Seeds torch, numpy, random and the envs (one seed call per run)."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda or cuda:N; resolved once and logged resolved."""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads (keep it small on a shared machine)."""
    run_dir: Path | None = None
    """Where config.json, metrics.jsonl, TensorBoard events and checkpoints go (default runs/KIND__NAME__SEED__TIME)."""
    resume: Path | None = None
    """Continue the run in this folder from its newest valid checkpoint (its config.json is used)."""
    progress: bool = True
    """Show a progress bar."""
    compile: bool = False
    """torch.compile the memory core's step (supervised training; costs compile time at the start, see docs/memory.md)."""


#: the nested field type that keeps RunConfig's flags unprefixed (``--seed``, not ``--run.seed``)
RunFlags = Annotated[RunConfig, tyro.conf.arg(name="")]


def run_field(cfg_type: type) -> str:
    """The name of the one :class:`RunConfig` field of a trainer config class."""
    hints = typing.get_type_hints(cfg_type, include_extras=True)
    names = [f.name for f in dataclasses.fields(cfg_type)
             if typing.get_args(hints[f.name])[:1] == (RunConfig,) or hints[f.name] is RunConfig]
    if len(names) != 1:
        raise TypeError(f"{cfg_type.__name__} must have exactly one RunConfig field (run: RunFlags)")
    return names[0]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _overridable(cfg_type: type) -> set[str]:
    hints = typing.get_type_hints(cfg_type, include_extras=True)
    return {name for name, tp in hints.items() if ResumeOverride in typing.get_args(tp)[1:]}


def _given(value: Any, f: dataclasses.Field) -> bool:
    return value != _default(f)


def resume_config(cfg: C, saved: dict[str, Any], run_dir: Path, source: str = "config.json") -> C:
    """The config a resumed run uses: ``saved`` (validated) plus what the override rule lets ``cfg`` change.

    Raises one :class:`HeedError` line when ``cfg`` sets an option that a resume cannot change.
    """
    cls = type(cfg)
    rname = run_field(cls)
    base = config_from_dict(cls, saved, f"cannot resume '{run_dir}': its {source}", ignore_unknown=False)
    allowed = _overridable(cls)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == rname:
            continue
        new, old = getattr(cfg, f.name), getattr(base, f.name)
        if not _given(new, f) or new == old:
            continue
        if f.name not in allowed and dataclasses.is_dataclass(new) and _overridable(type(new)):
            changes[f.name] = _resume_group(new, old, _default(f))  # a group of flags (a trainer's budget)
            continue
        if f.name not in allowed:
            raise HeedError(f"{flag_name(f.name)} cannot change on --resume (the run has {old!r}); "
                            "start a new run to change it")
        changes[f.name] = new
    given_run, saved_run = getattr(cfg, rname), getattr(base, rname)
    for f in dataclasses.fields(RunConfig):
        new, old = getattr(given_run, f.name), getattr(saved_run, f.name)
        if f.name in RUNTIME_FIELDS or f.name == "resume" or not _given(new, f) or new == old:
            continue
        if f.name == "run_dir" and Path(new) == Path(run_dir):
            continue
        raise HeedError(f"{flag_name(f.name)} cannot change on --resume (the run has {old!r}); "
                        "start a new run to change it")
    run = dataclasses.replace(saved_run, run_dir=Path(run_dir), resume=Path(run_dir),
                              **{k: getattr(given_run, k) for k in RUNTIME_FIELDS})
    return dataclasses.replace(base, **changes, **{rname: run})


def _resume_group(given: Any, saved: Any, default: Any) -> Any:
    """The override rule inside a nested group of flat flags (``budget: BudgetFlags``): ``saved`` with
    each field of ``given`` that differs from the trainer's ``default`` and from ``saved``, when that
    field is a :data:`ResumeOverride` one; any other such field is one :class:`HeedError` line."""
    allowed = _overridable(type(given))
    taken = {}
    for f in dataclasses.fields(given):
        new, old = getattr(given, f.name), getattr(saved, f.name)
        if new == old or (dataclasses.is_dataclass(default) and new == getattr(default, f.name)):
            continue
        if f.name not in allowed:
            raise HeedError(f"{flag_name(f.name)} cannot change on --resume (the run has {old!r}); "
                            "start a new run to change it")
        taken[f.name] = new
    return dataclasses.replace(saved, **taken)


def seed_everything(seed: int) -> None:
    """The one seed call of a run: Python's ``random``, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _read_identity(run_dir: Path) -> dict[str, Any] | None:
    if not (run_dir / RUN_FILE).exists() and not (run_dir / RUN_FILE).is_symlink():
        return None
    return read_json_object(run_dir / RUN_FILE, "run file", root=run_dir)


def _holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (RUN_FILE, CONFIG_FILE, "checkpoints"))


def guard_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a run in a folder that holds a heed run or anything else (an empty folder is fine)."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise HeedError(f"cannot start a run in '{run_dir}': it exists and is not a folder")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    if _holds_run(run_dir):
        raise HeedError(f"'{run_dir}' already holds a heed run; continue it with --resume {run_dir} "
                        "or choose another --run-dir")
    raise HeedError(f"'{run_dir}' is not empty and was not made by heed; choose another --run-dir "
                    "(nothing was changed)")


def guard_resume_dir(run_dir: Path, kind: str) -> dict[str, Any]:
    """Check ``run_dir`` holds a run of ``kind``; return its identity (run.json, made up for older runs)."""
    if not run_dir.is_dir():
        raise HeedError(f"cannot resume '{run_dir}': no such folder")
    identity = _read_identity(run_dir)
    if identity is None:
        if not (run_dir / CONFIG_FILE).exists():
            raise HeedError(f"cannot resume '{run_dir}': it holds no heed run (no {RUN_FILE} or {CONFIG_FILE})")
        return {"kind": kind, "run_id": None}  # a run made before run.json existed
    if identity.get("kind") != kind:
        raise HeedError(f"cannot resume '{run_dir}' as {kind}: it holds a {identity.get('kind')!r} run")
    if not isinstance(identity.get("run_id"), str):
        raise HeedError(f"cannot resume '{run_dir}': its {RUN_FILE} has no run id")
    return identity


@dataclass
class Run(Generic[C]):
    """A started (or resumed) run: its effective config, folder, device and resumed checkpoint."""

    kind: str
    cfg: C
    dir: Path
    run_id: str
    device: torch.device
    checkpoint: Checkpoint | None = None
    metric_tags: tuple[str, ...] = ()
    _writer: Any = None

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None

    @property
    def start_step(self) -> int:
        """The step training continues from (0 for a new run)."""
        return int(self.checkpoint.step or 0) if self.checkpoint is not None else 0

    @property
    def run_cfg(self) -> RunConfig:
        return getattr(self.cfg, run_field(type(self.cfg)))

    @property
    def writer(self):
        """TensorBoard ``SummaryWriter`` on the run folder (opened on first use).

        A new run gets the hyperparameters as a text table and in the HPARAMS tab (device resolved);
        a resumed one purges events after the checkpoint's step left by the interrupted process.
        """
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            with disk_errors(self.dir):
                if self.resumed:
                    self._writer = SummaryWriter(str(self.dir), purge_step=self.start_step + 1)
                else:
                    self._writer = SummaryWriter(str(self.dir))
                    shown = {**flat_hparams(self.cfg), "device_resolved": str(self.device)}
                    self._writer.add_text("hyperparameters", hparams_markdown(shown))
                    log_hparams(self._writer, shown, self.metric_tags)
        return self._writer

    def log_scalars(self, group: str, values: Mapping[str, float], step: int) -> None:
        """Log ``{group}/{name}`` scalars (group: charts, losses or eval); a non-finite loss stops the run."""
        if group not in TAG_GROUPS:
            raise ValueError(f"tag group '{group}' is not one of {TAG_GROUPS}")
        values = {k: float(v) for k, v in values.items()}
        if group == "losses":
            check_finite({f"{group}/{k}": v for k, v in values.items()}, step, str(self.dir))
        for name, value in values.items():
            self.writer.add_scalar(f"{group}/{name}", value, step)

    def append_metrics(self, step: int, row: Mapping[str, Any]) -> None:
        """Append one ``{"step": step, ...}`` row to ``metrics.jsonl`` (rows after a resumed step were dropped)."""
        with disk_errors(self.dir / METRICS_FILE), open(self.dir / METRICS_FILE, "a") as f:
            f.write(json.dumps({"step": int(step), **row}, default=float) + "\n")

    def save(self, step: int, tensors: dict[str, torch.Tensor], config: dict[str, Any],
             counters: dict[str, Any] | None = None, optimizer: torch.optim.Optimizer | None = None,
             kind: str | None = None, keep: int = 2, **extra: Any) -> Path:
        """Write ``checkpoints/step_<step>`` with the one meta schema and this run's id."""
        meta = checkpoint_meta(kind or self.kind, config, counters, step=step, run_id=self.run_id, **extra)
        return save_run_checkpoint(self.dir, step, tensors, meta, optimizer, keep=keep)

    def resume_command(self, budget_flag: str | None = None) -> str:
        """The command that continues this run (``budget_flag``, e.g. ``--total-steps``, to raise the budget)."""
        more = f" [{budget_flag} N]" if budget_flag else ""
        return f"heed train {self.kind} --resume {self.dir}{more}"

    @contextlib.contextmanager
    def interruptible(self, save: Callable[[], Any], budget_flag: str | None = None) -> Iterator[None]:
        """Ctrl-C / SIGTERM inside the block: ``save()`` once, then exit 130 with the resume line."""
        line = f"interrupted; the completed work is checkpointed in '{self.dir}'. Continue with: " \
               f"{self.resume_command(budget_flag)}"
        with interruptible(save, line):
            yield

    def finish(self, final: Mapping[str, float] | None = None, budget_flag: str | None = None,
               step: int | None = None) -> str:
        """Close the writer and print where the run is, its final metrics, how to resume, how to look."""
        if self._writer is not None:
            self._writer.close()
        lines = [f"done: {self.kind} run in {self.dir}" + (f" at step {step:,}" if step is not None else "")]
        if final:
            lines.append("final: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items()))
        lines.append(f"resume: {self.resume_command(budget_flag)}")
        lines.append(f"tensorboard: tensorboard --logdir {self.dir.parent}")
        text = "\n".join(lines)
        print(text)
        return text


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop ``metrics.jsonl`` rows after ``step`` (and a torn last line) left by an interrupted process."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and row["step"] > step:
            continue
        kept.append(line)
    with disk_errors(path):
        write_bytes_atomic(path, "".join(line + "\n" for line in kept).encode("utf-8"))


def start_run(
    kind: str,
    cfg: C,
    name: str = "",
    checkpoint_kind: str | tuple[str, ...] | None = None,
    metric_tags: tuple[str, ...] = (),
    migrate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    compiles: bool = False,
) -> Run[C]:
    """Start a new run or resume one (``cfg``'s ``--resume``): the one place trainers share for this.

    New run: validates ``cfg`` (every declared range; NaN/inf refused), refuses a ``--run-dir`` that
    holds a run or foreign files, creates the folder, writes ``run.json`` (kind, run id, resolved
    device) and ``config.json``. Resume: refuses a folder without a run or with a run of another kind,
    rebuilds the config by the override rule (:func:`resume_config`), loads the newest valid
    checkpoint (falling back past corrupt ones; ``checkpoint_kind`` defaults to ``kind``), drops the
    ``metrics.jsonl`` rows after its step and rewrites ``config.json`` with the new budgets. Both:
    one seed call, ``torch.set_num_threads``, the device resolved once. ``migrate`` maps a saved
    ``config.json`` written by an older heed to today's field names before it is checked. A trainer
    that honours ``--compile`` says so with ``compiles=True``; the others refuse it with one line.
    """
    validate(cfg)
    rname = run_field(type(cfg))
    given: RunConfig = getattr(cfg, rname)
    if given.compile and not compiles:
        raise HeedError(f"--compile is not available for {kind} runs (it compiles a memory core's step in "
                        "heed train supervised)")
    device = resolve_device(given.device)
    checkpoint = None
    if given.resume is not None:
        run_dir = Path(given.resume)
        identity = guard_resume_dir(run_dir, kind)
        saved = read_json_object(run_dir / CONFIG_FILE, "config file", root=run_dir)
        if migrate is not None:
            saved = migrate(saved)
        cfg = resume_config(cfg, saved, run_dir)
        run_id = identity["run_id"] or uuid.uuid4().hex
        checkpoint = load_latest_checkpoint(run_dir, checkpoint_kind or kind, run_id=identity["run_id"])
        if checkpoint is None:
            raise HeedError(f"cannot resume '{run_dir}': it has no valid checkpoint yet; start it again instead")
        _truncate_metrics(run_dir / METRICS_FILE, int(checkpoint.step or 0))
    else:
        run_dir = Path(given.run_dir) if given.run_dir is not None else default_run_dir(kind, name or kind, given.seed)
        guard_new_run_dir(run_dir)
        run_id = uuid.uuid4().hex
        cfg = dataclasses.replace(cfg, **{rname: dataclasses.replace(given, run_dir=run_dir)})
    prepare_run_dir(run_dir)
    run_cfg: RunConfig = getattr(cfg, rname)
    with disk_errors(run_dir):
        write_json_atomic(run_dir / RUN_FILE, {"format": "heed-run", "version": 1, "kind": kind, "run_id": run_id,
                                               "device": str(device), "started": time.time()})
    save_config(run_dir, dataclasses.replace(cfg, **{rname: dataclasses.replace(run_cfg, resume=None)}))
    torch.set_num_threads(run_cfg.threads)
    seed_everything(run_cfg.seed)
    print(f"{'resuming' if checkpoint else 'starting'} {kind} run in {run_dir} on {device}"
          + (f" from step {checkpoint.step:,}" if checkpoint is not None and checkpoint.step else ""),
          file=sys.stderr)
    return Run(kind=kind, cfg=cfg, dir=run_dir, run_id=run_id, device=device, checkpoint=checkpoint,
               metric_tags=tuple(metric_tags))
