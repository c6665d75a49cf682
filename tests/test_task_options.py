"""Task options are range-checked where the tasks are defined, before anything is sampled.

Every entry of :data:`heed.envs.tasks.TASKS` declares the range of each integer option once
(``option_ranges``); :func:`heed.envs.sequence.check_options` refuses a value outside it with one
:class:`HeedError` line, whichever way the task is built: ``TASKS[name](**options)``, ``gym.make``,
``fixed_length``, ``--task-options`` on the command line, a crafted ``config.json`` on ``--resume``
or a crafted checkpoint ``meta.json``.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from heed.envs.errors import HeedError
from heed.envs.sequence import check_options
from heed.envs.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "agents" / "pretrained" / "ntm-copy"
HUGE = 10**9
#: tasks being written elsewhere right now (envs/translation.py): they still check with their own requires
NOT_YET: set[str] = set()


def ranges_of(task) -> dict[str, tuple[int, int]]:
    return getattr(task, "option_ranges", {})


def int_options(task) -> dict[str, int]:
    """The integer keyword options of a task's constructor, with their defaults (an independent read)."""
    params = inspect.signature(task).parameters.values()
    return {p.name: p.default for p in params
            if isinstance(p.default, int) and not isinstance(p.default, bool)}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason="being written elsewhere: declare option_ranges"))
    if n in NOT_YET else n for n in sorted(TASKS)])
def test_every_integer_option_of_every_task_declares_a_range(name) -> None:
    task = TASKS[name]
    ranges = ranges_of(task)
    assert set(int_options(task)) <= set(ranges), f"{name}: options without a declared range"
    for option, (lo, hi) in ranges.items():
        assert lo <= hi and hi < HUGE, (option, lo, hi)


def _cases():
    for name in sorted(TASKS):
        for option, (lo, hi) in ranges_of(TASKS[name]).items():
            for value in {lo - 1, hi + 1, HUGE, -HUGE}:
                yield pytest.param(name, option, value, id=f"{name}:{option}={value}")
            yield pytest.param(name, option, "12", id=f"{name}:{option}=str")
            yield pytest.param(name, option, True, id=f"{name}:{option}=bool")


@pytest.mark.parametrize(("name", "option", "value"), list(_cases()))
def test_an_option_outside_its_range_is_one_line(name, option, value) -> None:
    with pytest.raises(HeedError, match=rf"task '.*': option {option} must be") as exc:
        TASKS[name](**{option: value})
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_range_bounds_themselves_are_accepted(name) -> None:
    """The smallest and, where cheap, the largest declared value builds a task that samples."""
    task_cls = TASKS[name]
    defaults = int_options(task_cls)
    rng = np.random.default_rng(0)
    for option, (lo, hi) in ranges_of(task_cls).items():
        for value in (lo, hi):
            options = {option: value}
            if option.startswith("min_"):  # keep min <= max
                options[option.replace("min_", "max_")] = max(value, defaults.get(option.replace("min_", "max_"), value))
            if option.startswith("max_") and option.replace("max_", "min_") in defaults:
                options[option.replace("max_", "min_")] = min(value, defaults[option.replace("max_", "min_")])
            if option == "max_nonzero" or option == "min_nonzero":
                options["size"] = max(value, defaults["size"])
            if option == "num_outputs":
                options["num_inputs"] = max(value, defaults["num_inputs"])
            if option == "length":
                options["order"] = min(value, defaults["order"])
            if option == "num_inputs":
                options["num_outputs"] = min(value, defaults["num_outputs"])
            task = task_cls(**options)
            if value == lo:
                task.sample(1, rng)


def test_check_options_against_hand_written_cases() -> None:
    ranges = {"a": (1, 5), "b": (1, 5)}
    check_options("t", {"a": 1, "b": 5}, ranges, (("a", "b"),))
    check_options("t", {"a": np.int64(3), "b": 3}, ranges, (("a", "b"),))
    for values, message in [({"a": 0, "b": 1}, "a must be in"), ({"a": 1, "b": 6}, "b must be in"),
                            ({"a": 1.0, "b": 2}, "a must be an integer"), ({"a": 4, "b": 2}, "a must be <= b")]:
        with pytest.raises(HeedError, match=message):
            check_options("t", values, ranges, (("a", "b"),))


def test_fixed_length_and_gym_make_and_reset_are_checked() -> None:
    with pytest.raises(HeedError, match="min_len must be in"):
        TASKS["copy"]().fixed_length(HUGE)
    with pytest.raises(HeedError, match="length"):
        TASKS["dynamic-ngrams"]().fixed_length(HUGE)
    import heed.envs  # noqa: F401  (registers the ids)

    with pytest.raises(HeedError, match="max_len"):
        gym.make("heed/Copy-v0", max_len=HUGE)
    env = gym.make("heed/Copy-v0", max_len=3)
    with pytest.raises(HeedError, match="max_len"):
        env.reset(seed=0, options={"max_len": HUGE})
    env.close()


@pytest.mark.filterwarnings("ignore:'heed.scripts.*found in sys.modules:RuntimeWarning")
def test_task_options_on_the_command_line_are_one_line(tmp_path, capsys, monkeypatch) -> None:
    from heed.scripts.cli import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "supervised", "--task", "copy", "--task-options", "max_len=1000000000",
              "--run-dir", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "max_len" in err, err
    assert list(tmp_path.iterdir()) == []  # refused before a run folder was made


def test_a_crafted_config_json_is_refused_on_resume(tmp_path) -> None:
    from heed.agents.trainers import supervised
    from heed.agents.trainers.supervised import Config

    run_dir = tmp_path / "run"
    cfg = Config(task="copy", task_options="max_len=3", total_sequences=8, batch_size=4, eval_sequences=4)
    supervised.main(supervised_config(cfg, run_dir))
    saved = json.loads((run_dir / "config.json").read_text())
    saved["task_options"] = f"max_len={HUGE}"
    (run_dir / "config.json").write_text(json.dumps(saved))
    resume = supervised_config(Config(), None, resume=run_dir)
    with pytest.raises(HeedError, match="max_len must be in"):
        supervised.main(resume)


def supervised_config(cfg, run_dir: Path | None, resume: Path | None = None):
    import dataclasses

    run = dataclasses.replace(cfg.run, run_dir=run_dir, resume=resume, progress=False, device="cpu", threads=1)
    return dataclasses.replace(cfg, run=run)


def test_a_crafted_checkpoint_meta_is_refused_before_sampling(tmp_path) -> None:
    from heed.agents.trainers.sequence_utils import load_sequence_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(PRETRAINED, ckpt)
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["task_options"] = {**meta.get("task_options", {}), "max_len": HUGE}
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(HeedError, match="max_len must be in"):
        load_sequence_model(str(ckpt))
