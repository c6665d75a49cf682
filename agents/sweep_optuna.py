"""The ``optuna`` search of :mod:`heed.agents.sweep`: a TPE sampler proposes the configurations.

``heed sweep --search optuna --samples N --objective TAG [--direction min|max]`` asks an Optuna study
for N configurations of the same axes as a random search (``NAME=log:LOW..HIGH``, ``uniform:``,
``int:`` ranges; ``NAME=V1,V2`` and ``'ALT1 | ALT2'`` lists as categorical choices). Each
configuration runs over every seed as ordinary trials (:func:`heed.agents.sweep.run_trial`: the same
folders, records, resume and retry rules as a grid), and its objective value is the mean over its
seeds of the last value of the TensorBoard scalar ``TAG`` in their events. Later proposals use the
earlier values: TPE (Bergstra et al., 2011) models the density of good and bad configurations,
seeded by ``--search-seed``.

The study lives in the sweep folder, ``SWEEP_DIR/optuna.journal`` (Optuna's append-only JSON
journal), so the same command again continues it: finished configurations stay finished and count
towards N; a configuration cut short (Ctrl-C, or a killed sweep) is proposed again with the same
values, so its trials resume from their checkpoints. Drawn values are written with 3 significant
digits (they name the folders), the value the study records is the unrounded draw. No pruning: a
trial is a separate process that reports nothing until it ends. Install with
``pip install "heed-attention[optuna]"``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from heed.agents.common.errors import HeedError, require
from heed.agents.sweep import (
    Axis,
    Distribution,
    Progress,
    Trial,
    TrialPool,
    default_jobs,
    is_done,
    slug,
    trial_record,
    trials_of,
)

JOURNAL = "optuna.journal"
STUDY = "heed"
#: user attribute holding a study trial's outcome: done, failed or interrupted (only done and failed count)
STATUS = "status"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise HeedError('--search optuna needs Optuna: pip install "heed-attention[optuna]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def search_space(axes: list[Axis]) -> dict[str, Any]:
    """Optuna distributions, one per axis: a range as a float (log or not) or int distribution, a list as
    a categorical choice among its alternatives' names. Parameter names: the flag of a ``NAME=`` axis,
    ``axisI`` (from 1) for an ``'ALT1 | ALT2'`` axis."""
    optuna = _optuna()
    space: dict[str, Any] = {}
    for i, axis in enumerate(axes, 1):
        if isinstance(axis, Distribution):
            name = axis.flag.lstrip("-")
            if axis.kind == "int":
                space[name] = optuna.distributions.IntDistribution(int(axis.low), int(axis.high))
            else:
                space[name] = optuna.distributions.FloatDistribution(axis.low, axis.high, log=axis.kind == "log")
        else:
            flags = {alt[0] for alt in axis}
            named = len(flags) == 1 and all(len(alt) == 2 and alt[0].startswith("--") for alt in axis)
            name = next(iter(flags)).lstrip("-") if named else f"axis{i}"
            space[name] = optuna.distributions.CategoricalDistribution([slug(alt) for alt in axis])
    require(len(space) == len(axes), "two axes of an optuna search set the same flag")
    return space


def configuration(axes: list[Axis], space: dict[str, Any], params: dict[str, Any]) -> tuple[list[str], ...]:
    """The alternatives (one per axis) of a study trial's parameters, in the order of the axes."""
    combo = []
    for axis, name in zip(axes, space):
        value = params[name]
        if isinstance(axis, Distribution):
            combo.append(axis.alternative(value))
        else:
            combo.append(next(alt for alt in axis if slug(alt) == value))
    return tuple(combo)


def objective_value(trials: list[Trial], metric: str) -> float:
    """The mean over a configuration's seeds of the last value of the scalar tag ``metric`` in their events."""
    from heed.analysis.runs import read_scalars

    values = []
    for trial in trials:
        scalars = read_scalars(trial.dir)
        if metric not in scalars:
            tags = ", ".join(sorted(scalars)[:12]) or "nothing"
            raise HeedError(f"--objective {metric}: trial {trial.name} does not log it; it logs {tags}")
        values.append(scalars[metric].last)
    return sum(values) / len(values)


def load_study(sweep_dir: Path, objective: str, direction: str, search_seed: int):
    """The sweep folder's study (created on the first run), its objective and direction checked.

    The sampler is TPE seeded by ``search_seed`` plus the number of trials already in the study, so that
    a resumed study does not replay the first run's random start-up draws.
    """
    optuna = _optuna()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    names = [s.study_name for s in storage.get_all_studies()]
    goal = "minimize" if direction == "min" else "maximize"
    if STUDY in names:
        study = optuna.load_study(study_name=STUDY, storage=storage)
        old = (study.user_attrs.get("objective"), study.direction.name.lower())
        if old[1] == goal and not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            study.set_user_attr("objective", objective)  # nothing measured yet: a mistyped tag may be corrected
        else:
            require(old == (objective, goal), f"'{sweep_dir}' holds a study to {old[1]} {old[0]}; use another "
                                              f"--sweep-dir to {goal} {objective}")
    else:
        study = optuna.create_study(study_name=STUDY, storage=storage, direction=goal)
        study.set_user_attr("objective", objective)
    sampler = optuna.samplers.TPESampler(seed=search_seed + len(study.trials))
    return optuna.load_study(study_name=STUDY, storage=storage, sampler=sampler)


def _requeue_unfinished(study) -> None:
    """Mark trials left running by a killed sweep as failed and propose their values again (same folders)."""
    optuna = _optuna()
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.enqueue_trial(frozen.params)
        study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)


def counted(study) -> int:
    """Study trials that count towards ``--samples``: those whose trials all finished, or failed for good."""
    return sum(t.user_attrs.get(STATUS) in ("done", "failed") for t in study.get_trials(deepcopy=False))


def run_optuna(
    trainer: str, seeds: list[int], options: list[str], axes: list[Axis], sweep_dir: Path, samples: int,
    objective: str, direction: str = "min", search_seed: int = 0, jobs: int = 0, retries: int = 1, stream=None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Run the study until it holds ``samples`` finished configurations; return the records of the trials
    run or skipped here, and the best configuration so far (``group``, ``value``, ``number``, ``params``)."""
    optuna = _optuna()
    require(samples > 0, "--search optuna needs --samples N (how many configurations to try)")
    require(objective != "", "--search optuna needs --objective TAG (a scalar the trials log, e.g. eval/bits_per_sequence)")
    space = search_space(axes)
    study = load_study(sweep_dir, objective, direction, search_seed)
    _requeue_unfinished(study)
    jobs = jobs or default_jobs()
    left = max(samples - counted(study), 0)
    progress = Progress(left * len(seeds), 0, jobs, stream)
    progress.show()
    records: list[dict[str, Any]] = []
    live: dict[int, tuple[Any, list[Trial], list[dict]]] = {}  # study trial number -> (trial, its runs, records)
    queue: list[tuple[int, Trial]] = []  # runs to start, with their study trial's number
    active: dict[str, int] = {}  # name of a run under way -> its study trial's number
    try:
        with TrialPool(jobs, retries, progress) as pool:
            while left or queue or pool.pending:
                if left and not queue and pool.idle():
                    asked = study.ask(space)
                    runs = trials_of(trainer, configuration(axes, space, asked.params), seeds, options, sweep_dir)
                    asked.set_user_attr("group", runs[0].group)
                    live[asked.number] = (asked, runs, [])
                    queue += [(asked.number, t) for t in runs]
                    left -= 1
                # a configuration proposed again while its first proposal runs waits for it, then finds it done
                while queue and pool.idle() and queue[0][1].name not in active:
                    number, trial = queue.pop(0)
                    if is_done(trial):
                        progress.done += 1
                        live[number][2].append(trial_record(trial))
                    else:
                        active[trial.name] = number
                        pool.submit(trial)
                for trial, record in pool.collect() if pool.pending else []:
                    live[active.pop(trial.name)][2].append(record)
                for number in [n for n, (_, runs, done) in live.items() if len(done) == len(runs)]:
                    asked, runs, done = live.pop(number)
                    records += done
                    _tell(study, asked, runs, done, objective)
    except BaseException:
        for asked, _, _ in live.values():  # cut short: the next run proposes these values again
            asked.set_user_attr(STATUS, "interrupted")
            study.tell(asked, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(asked.params)
        raise
    return records, best(study)


def _tell(study, asked, runs: list[Trial], done: list[dict], objective: str) -> None:
    """Report a configuration whose trials all ended: its objective value, or a failure."""
    optuna = _optuna()
    statuses = {r.get("status") for r in done}
    if statuses == {"done"}:
        value = objective_value(runs, objective)
        if math.isfinite(value):
            asked.set_user_attr(STATUS, "done")
            study.tell(asked, value)
            return
    status = "interrupted" if "interrupted" in statuses else "failed"
    asked.set_user_attr(STATUS, status)
    study.tell(asked, state=optuna.trial.TrialState.FAIL)
    if status == "interrupted":
        study.enqueue_trial(asked.params)


def best(study) -> dict[str, Any] | None:
    """The study's best finished configuration: its group (folder name without the seed), value, number and
    parameters; None before any finished."""
    optuna = _optuna()
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    trial = study.best_trial
    return {"group": trial.user_attrs.get("group"), "value": trial.value, "number": trial.number, "params": trial.params}


def corners(axes: list[Axis]) -> list[tuple[list[str], ...]]:
    """Configurations that together use every alternative of every list axis and both ends of every range
    (the others at their first alternative or low end): checked with the trainer's parser before a study
    starts, since its own proposals come only as it runs."""
    first = [[a.alternative(a.low)] if isinstance(a, Distribution) else [a[0]] for a in axes]
    combos = [tuple(alts[0] for alts in first)]
    for i, axis in enumerate(axes):
        options = [axis.alternative(axis.low), axis.alternative(axis.high)] if isinstance(axis, Distribution) else axis
        combos += [tuple(option if j == i else alts[0] for j, alts in enumerate(first)) for option in options[1:]]
    return combos
