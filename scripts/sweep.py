"""Run a trainer over seeds x options: ``heed sweep --trainer KIND [sweep options] -- [trainer options]``.

    heed sweep --trainer supervised --seeds 1 2 3 4 5 --grid 'model:lstm | model:ntm' --sweep-dir sweeps/copy \\
        -- --task copy --total-sequences 20000
    heed sweep --config sweeps/copy.toml           # the same, from a TOML file
    heed aggregate sweeps/copy                     # IQM and mean with 95 % CIs, curves, a Markdown table
    heed sweep --trainer supervised --seeds 1 --search optuna --samples 20 --objective eval/bits_per_sequence \\
        --grid learning-rate=log:1e-4..1e-2 --sweep-dir sweeps/lr -- --task copy --max-cpu-seconds 60

Everything after ``--`` goes to every trial unchanged (``python scripts/train.py KIND --help`` lists
it); ``--grid`` axes are ``NAME=V1,V2`` or ``'ALT1 | ALT2'`` (see ``heed.agents.sweep``). Every
trial's options are checked with the trainer's parser before any trial starts. Running the same
command again skips finished trials and resumes interrupted ones from their checkpoints. A TOML
file holds the same fields (``trainer``, ``seeds``, ``grid``, ``options``, ``sweep_dir``, ...);
flags on the command line override it. Details: docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.safe_io import read_bytes_capped
from heed.agents.common.validate import Range, SeedRange, config_from_dict, validate
from heed.agents.trainers import TRAINERS

#: the largest sweep file read
MAX_TOML_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Config:
    """A grid of ordinary heed runs; the trainer options shared by all come after ``--``."""

    trainer: str = ""
    """trainer to sweep: any name of ``train.py``'s table (dqn, supervised, ppo, glimpse, draw, ...)"""
    seeds: Annotated[tuple[int, ...], SeedRange] = (1, 2, 3, 4, 5)
    """seeds of every configuration"""
    grid: tuple[str, ...] = ()
    """grid axes, each NAME=V1,V2 (the trainer flag --NAME) or 'ALT1 | ALT2' (whole option strings)"""
    search: Literal["grid", "random", "optuna"] = "grid"
    """grid: every combination of the axes; random: --samples draws (axes may then be ranges NAME=log:LOW..HIGH,
    NAME=uniform:LOW..HIGH, NAME=int:LOW..HIGH); optuna: --samples configurations proposed by Optuna's TPE sampler
    from the --objective values of the earlier ones (pip install "heed-attention[optuna]")"""
    samples: Annotated[int, Range(0, 100_000)] = 0
    """configurations a random or optuna search tries (each run over every seed)"""
    search_seed: Annotated[int, SeedRange] = 0
    """seed of the random draws or of the TPE sampler (the same seed draws the same configurations, so a re-run resumes them)"""
    objective: str = ""
    """optuna: the TensorBoard scalar to optimise (e.g. eval/bits_per_sequence), its last value, mean over the seeds"""
    direction: Literal["min", "max"] = "min"
    """optuna: minimise or maximise the objective"""
    options: tuple[str, ...] = ()
    """trainer options shared by every trial (on the command line: everything after --)"""
    sweep_dir: Path | None = None
    """folder of the sweep: one sub-folder per trial plus sweep.json (default sweeps/TRAINER)"""
    config: Path | None = None
    """a TOML file with these fields (flags given on the command line override it)"""
    backend: Literal["local", "ray"] = "local"
    """local: a process pool on this machine; ray: Ray Tune (pip install "heed-attention[ray]")"""
    jobs: Annotated[int, Range(0, 4096)] = 0
    """trials at once (0: one per core for local, as many as Ray has CPUs for ray)"""
    retries: Annotated[int, Range(0, 100)] = 1
    """attempts after a failure, each resuming from the trial's checkpoint (bad input is not retried)"""
    ray_address: str | None = None
    """a Ray cluster (auto, or ray://HOST:10001); default: a local Ray instance"""
    dry_run: bool = False
    """check and list the trials, run nothing"""


def load_toml(path: Path) -> dict:
    """A sweep file's fields (``options`` may be a string, shell-split, or a list of arguments), types and
    ranges checked; a file that is not a small regular UTF-8 file is one line."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise HeedError("sweep files need Python 3.11 or later (tomllib); give the options as flags") from None
    data = read_bytes_capped(path, MAX_TOML_BYTES, "sweep file")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise HeedError(f"sweep file '{path}' is not UTF-8 text (byte {exc.start})") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise HeedError(f"sweep file '{path}' is not valid TOML: {exc}") from None
    fields = {f.name for f in dataclasses.fields(Config)} - {"config"}
    unknown = sorted(set(raw) - fields)
    require(not unknown, f"sweep file '{path}': unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    if isinstance(raw.get("options"), str):
        try:
            raw["options"] = shlex.split(raw["options"])
        except ValueError as exc:
            raise HeedError(f"sweep file '{path}': options: {exc}") from None
    checked = config_from_dict(Config, raw, f"sweep file '{path}'")
    return {key: getattr(checked, key) for key in raw}


def _is_flag(token: str) -> bool:
    """Whether a command-line token is a flag: ``--grid "--model ram | --model cnn"`` passes one token that
    starts with ``-`` but, holding a space or ``|``, is an axis of whole option strings, never a flag."""
    return token.startswith("-") and not any(c.isspace() or c == "|" for c in token)


def _take_grid(head: list[str]) -> tuple[list[str], list[str] | None]:
    """``head`` without its ``--grid`` axes, and the axes (None when there is no ``--grid``). The parser
    would read an axis such as ``"--model ram | --model cnn"`` (glimpse's ``--model`` flag) as an unknown
    flag, so the axes are taken out before it runs: every token after ``--grid`` up to the next flag."""
    rest: list[str] = []
    grid: list[str] | None = None
    i = 0
    while i < len(head):
        if head[i] != "--grid":
            rest.append(head[i])
            i += 1
            continue
        grid = [] if grid is None else grid
        i += 1
        while i < len(head) and not _is_flag(head[i]):
            grid.append(head[i])
            i += 1
    return rest, grid


def parse(argv: list[str]) -> Config:
    """The sweep's own flags before ``--`` (over a ``--config`` file), the trainer options after it."""
    head, tail = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, None)
    head, grid = _take_grid(head)
    default = Config()
    if "--config" in head and head.index("--config") + 1 < len(head):
        path = Path(head[head.index("--config") + 1])
        default = Config(**load_toml(path), config=path)
    cfg = parse_config(Config, args=head, prog="heed sweep", description=__doc__, default=default)
    cfg = dataclasses.replace(cfg, grid=tuple(grid)) if grid is not None else cfg
    return dataclasses.replace(cfg, options=tuple(tail)) if tail is not None else cfg


def main(cfg: Config) -> list[dict]:
    """Expand, validate, record and run the sweep; return every trial's record (``SWEEP_DIR/trials/NAME.json``)."""
    from heed.agents import sweep

    validate(cfg)
    require(cfg.trainer != "", f"--trainer is required ({', '.join(TRAINERS)}), or a --config file with trainer = ...")
    require(len(cfg.seeds) > 0, "--seeds needs at least one seed")
    require(cfg.search == "optuna" or cfg.objective == "", "--objective is for --search optuna")
    sweep_dir = cfg.sweep_dir or Path("sweeps") / cfg.trainer
    if cfg.search == "optuna":
        return _main_optuna(cfg, sweep_dir)
    trials = sweep.expand(cfg.trainer, list(cfg.seeds), list(cfg.options), list(cfg.grid), sweep_dir,
                          cfg.search, cfg.samples, cfg.search_seed)
    sweep.validate(trials)
    if cfg.dry_run:
        for trial in trials:
            print(f"{trial.name}: {shlex.join(sweep.trial_args(trial, resume=False))}")
        return []
    sweep.write_manifest(sweep_dir, _spec(cfg), trials)
    try:
        if cfg.backend == "ray":
            from heed.agents.sweep_ray import run_ray

            records = run_ray(trials, cfg.jobs, cfg.retries, cfg.ray_address)
        else:
            records = sweep.run_local(trials, cfg.jobs, cfg.retries)
    except KeyboardInterrupt:
        print("\ninterrupted: the running trials wrote checkpoints; run the same command again to continue",
              file=sys.stderr)
        raise SystemExit(130) from None
    failed = [t.name for t, r in zip(trials, records) if r.get("status") != "done"]
    require(not failed, f"{len(failed)} of {len(trials)} trials did not finish ({', '.join(failed[:3])}"
            f"{', ...' if len(failed) > 3 else ''}); see {sweep_dir}/logs/, then run the same command again")
    print(f"{len(trials)} trials done in '{sweep_dir}'. Next: heed aggregate {sweep_dir}")
    return records


def _spec(cfg: Config) -> dict:
    """What ``sweep.json`` records of the command."""
    return {"trainer": cfg.trainer, "seeds": list(cfg.seeds), "grid": list(cfg.grid), "options": list(cfg.options),
            "backend": cfg.backend, "search": cfg.search, "samples": cfg.samples, "search_seed": cfg.search_seed,
            **({"objective": cfg.objective, "direction": cfg.direction} if cfg.search == "optuna" else {})}


def _main_optuna(cfg: Config, sweep_dir: Path) -> list[dict]:
    """An Optuna study over the axes (:mod:`heed.agents.sweep_optuna`), checked before it starts."""
    from heed.agents import sweep, sweep_optuna

    require(cfg.backend == "local", "--search optuna runs on the local backend (leave out --backend ray)")
    require(cfg.samples > 0, "--search optuna needs --samples N (how many configurations to try)")
    require(cfg.objective != "", "--search optuna needs --objective TAG (a scalar the trials log, e.g. eval/bits_per_sequence)")
    seeds, options = list(cfg.seeds), list(cfg.options)
    axes = sweep.parse_axes(cfg.trainer, seeds, options, list(cfg.grid))
    require(axes, "--search optuna needs at least one --grid axis to search")
    space = sweep_optuna.search_space(axes)
    corners = sweep_optuna.corners(axes)
    sweep.validate([t for combo in corners for t in sweep.trials_of(cfg.trainer, combo, seeds[:1], options, sweep_dir)])
    if cfg.dry_run:
        print(f"optuna: {cfg.samples} configurations x {len(seeds)} seed(s), {cfg.direction} {cfg.objective}, over:")
        for name, distribution in space.items():
            print(f"  {name}: {distribution}")
        return []
    sweep.write_manifest(sweep_dir, _spec(cfg), [])
    try:
        records, best = sweep_optuna.run_optuna(cfg.trainer, seeds, options, axes, sweep_dir, cfg.samples, cfg.objective,
                                                cfg.direction, cfg.search_seed, cfg.jobs, cfg.retries)
    except KeyboardInterrupt:
        print("\ninterrupted: the running trials wrote checkpoints; run the same command again to continue the study",
              file=sys.stderr)
        raise SystemExit(130) from None
    failed = [r.get("dir", "?") for r in records if r.get("status") != "done"]
    require(not failed, f"{len(failed)} trials did not finish ({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}); "
            f"see {sweep_dir}/logs/, then run the same command again")
    if best is not None:
        print(f"best of the study: {best['group']} ({cfg.objective} = {best['value']:.6g}, study trial {best['number']})")
    print(f"{len(records)} trials run or found done in '{sweep_dir}'. Next: heed aggregate {sweep_dir}")
    return records


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _sigterm)
    cli_main(lambda: main(parse(sys.argv[1:])))
