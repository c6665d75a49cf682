"""Sweeps and their aggregation: grid syntax, statistics against hand computation, a real local sweep
of two tiny supervised trials, a killed sweep that resumes, invalid options refused before any trial,
(where Ray is installed) the Ray backend giving the local backend's numbers, and (where Optuna is installed)
an Optuna search that runs, resumes and reports the best configuration by the metric."""

from __future__ import annotations

import importlib.util
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from heed.agents import sweep
from heed.agents.common.errors import HeedError
from heed.analysis import stats
from heed.scripts import aggregate
from heed.scripts import sweep as sweep_cli

pytestmark = pytest.mark.usefixtures("one_thread")

#: a supervised trial of a couple of seconds (mostly imports): 8 updates of an 8-unit LSTM on copy
TINY = ["--task", "copy", "--batch-size", "8", "--eval-every", "32", "--eval-sequences", "16", "--log-every", "16",
        "--image-every", "0", "--task-options", "max_len=3", "model:lstm", "--model.hidden-size", "8"]


# --- statistics against hand computation ---------------------------------------------------------------


def test_iqm_by_hand():
    # n = 8: drop the 2 lowest and 2 highest of 1..7, 100 -> mean(3, 4, 5, 6)
    assert stats.iqm(np.array([1, 2, 3, 4, 100, 5, 6, 7])) == pytest.approx(4.5)
    assert stats.iqm(np.array([10, 1, 2, 3, 4])) == pytest.approx(3.0)  # n = 5: drop 1 and 10
    assert stats.iqm(np.array([1, 2, 6])) == pytest.approx(3.0)  # n < 4: the mean
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(size=(11, 3))
    np.testing.assert_allclose(stats.iqm(x), scipy_stats.trim_mean(x, 0.25, axis=0))


def test_bootstrap_by_hand():
    # two seeds 0 and 1: resampled means are 0 (p 1/4), 0.5 (p 1/2), 1 (p 1/4): the 95 % CI is [0, 1]
    low, high = stats.bootstrap_ci(np.array([0.0, 1.0]), stats.mean)
    assert (float(low), float(high)) == (0.0, 1.0)
    low, high = stats.bootstrap_ci(np.full(5, 3.5), stats.iqm)
    assert float(low) == float(high) == 3.5
    # against the exact bootstrap distribution: all 4^4 resamples of 4 seeds, equally likely
    x = np.array([0.0, 1.0, 2.0, 10.0])
    exact = np.array([x[list(i)].mean() for i in itertools.product(range(4), repeat=4)])
    low, high = stats.bootstrap_ci(x, stats.mean, resamples=20000)
    assert float(low) == pytest.approx(np.quantile(exact, 0.025), abs=0.3)
    assert float(high) == pytest.approx(np.quantile(exact, 0.975), abs=0.3)


def test_bootstrap_of_curves_is_per_point():
    curves = np.random.default_rng(1).normal(size=(6, 4))  # [seeds, points]
    low, high = stats.bootstrap_ci(curves, stats.iqm, resamples=300, seed=3)
    for j in range(4):
        lo_j, hi_j = stats.bootstrap_ci(curves[:, j], stats.iqm, resamples=300, seed=3)
        assert (low[j], high[j]) == (lo_j, hi_j)
    row = stats.summarize(np.array([1.0, 2.0, 3.0, 4.0]))
    assert row["n"] == 4 and row["mean"] == 2.5 and row["iqm"] == 2.5
    assert row["mean_low"] <= row["mean"] <= row["mean_high"]


# --- grid syntax -------------------------------------------------------------------------------------------


def test_axis_syntax_and_option_order():
    assert sweep.parse_axis("learning-rate=0.1,0.2") == [["--learning-rate", "0.1"], ["--learning-rate", "0.2"]]
    assert sweep.parse_axis("model:ntm --model.memory-size 16 | model:lstm") == [
        ["model:ntm", "--model.memory-size", "16"], ["model:lstm"]]
    # one model (or one flag list) alone is a one-alternative axis, not a syntax error
    assert sweep.parse_axis("model:act --model.tau 1e-4") == [["model:act", "--model.tau", "1e-4"]]
    assert sweep.parse_axis("--no-progress") == [["--no-progress"]]
    with pytest.raises(HeedError, match="NAME=V1,V2"):
        sweep.parse_axis("just words")
    # the trainer's own options go before the first subcommand, whichever group they come from
    ordered = sweep.order_options([["--task", "copy", "model:lstm", "--model.hidden-size", "8"], ["--lr", "1"]])
    assert ordered == ("--task", "copy", "--lr", "1", "model:lstm", "--model.hidden-size", "8")
    trials = sweep.expand("supervised", [1, 2], ["--task", "copy"], ["lr=1,2", "model:gru | model:lstm"], Path("s"))
    assert len(trials) == 8 and len({t.dir for t in trials}) == 8
    assert trials[0].dir == Path("s/lr=1__model-gru__seed=1") and trials[0].group == "lr=1__model-gru"
    with pytest.raises(HeedError, match="--seed is set by the sweep"):
        sweep.expand("supervised", [1], ["--seed", "3"], [], Path("s"))


def test_random_search_draws_reproducible_configurations_in_range():
    axes = ["learning-rate=log:1e-4..1e-2", "hidden=int:8..12", "model:gru | model:lstm"]
    a = sweep.expand("supervised", [1, 2], ["--task", "copy"], axes, Path("s"), "random", 50, search_seed=7)
    b = sweep.expand("supervised", [1, 2], ["--task", "copy"], axes, Path("s"), "random", 50, search_seed=7)
    c = sweep.expand("supervised", [1, 2], ["--task", "copy"], axes, Path("s"), "random", 50, search_seed=8)
    assert [t.dir for t in a] == [t.dir for t in b] != [t.dir for t in c]  # a re-run resumes the same trials
    assert len(a) == 100 and len({t.group for t in a}) == 50  # 50 configurations x 2 seeds
    lrs = np.array([float(t.args[t.args.index("--learning-rate") + 1]) for t in a])
    hidden = {int(t.args[t.args.index("--hidden") + 1]) for t in a}
    assert lrs.min() >= 1e-4 * 0.995 and lrs.max() <= 1e-2 * 1.005 and hidden <= set(range(8, 13))
    # log-uniform: about half the draws below the geometric mean 1e-3 (uniform would put ~9 % there)
    assert 0.25 < float(np.mean(lrs < 1e-3)) < 0.75
    assert {t.args[-1] for t in a} == {"model:gru", "model:lstm"}
    with pytest.raises(HeedError, match="needs --search random"):
        sweep.expand("supervised", [1], [], ["learning-rate=log:1e-4..1e-2"], Path("s"))
    with pytest.raises(HeedError, match="more than the 2 distinct"):
        sweep.expand("supervised", [1], [], ["model:gru | model:lstm"], Path("s"), "random", 3)
    with pytest.raises(HeedError, match="needs --samples"):
        sweep.expand("supervised", [1], [], ["model:gru | model:lstm"], Path("s"), "random", 0)
    for bad in ("lr=log:0..1", "lr=uniform:2..1", "lr=int:1.5..3", "lr=log:a..b"):
        with pytest.raises(HeedError, match="axis 'lr="):
            sweep.parse_axis(bad)


# --- real sweeps -------------------------------------------------------------------------------------------


def _jsonl_last(path: Path, key: str) -> float:
    return json.loads(path.read_text().splitlines()[-1])[key]


def test_invalid_options_fail_before_any_trial(tmp_path):
    cfg = sweep_cli.Config(trainer="supervised", seeds=(1,), grid=("learning-rate=0.1,oops",),
                           options=("--total-sequences", "64", *TINY), sweep_dir=tmp_path / "s")
    with pytest.raises(HeedError, match=r"invalid supervised options for trial learning-rate=oops__seed=1"):
        sweep_cli.main(cfg)
    assert not (tmp_path / "s").exists()
    # the command line: one line and exit code 2, no traceback
    out = subprocess.run([sys.executable, "-m", "heed.scripts.sweep", "--trainer", "supervised", "--sweep-dir",
                          str(tmp_path / "s"), "--", "--task", "copy", "--no-such-option", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: invalid supervised options") and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_two_trial_sweep_and_aggregate(tmp_path):
    cfg = sweep_cli.Config(trainer="supervised", seeds=(1, 2), options=("--total-sequences", "64", *TINY),
                           sweep_dir=tmp_path / "s", jobs=2)
    records = sweep_cli.main(cfg)
    assert [r["status"] for r in records] == ["done", "done"]
    manifest = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert manifest["trainer"] == "supervised" and set(manifest["trials"]) == {"base__seed=1", "base__seed=2"}
    assert manifest["versions"]["torch"] and "commit" in manifest["git"]
    finals = []
    for seed in (1, 2):
        run = tmp_path / "s" / f"base__seed={seed}"
        assert json.loads((run / "config.json").read_text())["run"]["seed"] == seed
        assert any(run.glob("events.out.tfevents.*")) and (run / "checkpoints" / "latest").exists()
        finals.append(_jsonl_last(run / "metrics.jsonl", "eval_bits_per_sequence"))
    assert finals[0] != finals[1]  # the seeds differ
    rows = aggregate.main(aggregate.Config(sweep_dir=tmp_path / "s", resamples=200))
    row = next(r for r in rows if r["metric"] == "eval/bits_per_sequence")
    # aggregated from the TensorBoard events; checked against metrics.jsonl, computed by hand
    assert row["n"] == 2 and row["mean"] == pytest.approx(np.mean(finals), rel=1e-5)
    assert row["mean_low"] == pytest.approx(min(finals), rel=1e-5) and row["mean_high"] == pytest.approx(max(finals), rel=1e-5)
    out = tmp_path / "s" / "aggregate"
    assert "| eval/bits_per_sequence | base | 2 |" in (out / "table.md").read_text()
    assert (out / "eval_bits_per_sequence.png").stat().st_size > 0 and any((out / "tensorboard" / "base").iterdir())
    # --value max: each trial's highest held-out value over training, against metrics.jsonl by hand
    highs = [max(json.loads(line)["eval_bits_per_sequence"] for line in (tmp_path / "s" / f"base__seed={seed}" /
            "metrics.jsonl").read_text().splitlines() if "eval_bits_per_sequence" in line) for seed in (1, 2)]
    assert all(h > f for h, f in zip(highs, finals))  # the cost falls as they train: max is not last
    rows = aggregate.main(aggregate.Config(sweep_dir=tmp_path / "s", resamples=200, value="max", out_dir=tmp_path / "m",
                                           metrics=("eval/bits_per_sequence",)))
    assert rows[0]["values"] == pytest.approx(highs, rel=1e-5) and rows[0]["mean"] == pytest.approx(np.mean(highs), rel=1e-5)
    assert "| metric (max over training) |" in (tmp_path / "m" / "table.md").read_text()
    # a second run of the same sweep redoes nothing
    before = {s: (tmp_path / "s" / "trials" / f"base__seed={s}.json").read_text() for s in (1, 2)}
    sweep_cli.main(cfg)
    assert before == {s: (tmp_path / "s" / "trials" / f"base__seed={s}.json").read_text() for s in (1, 2)}


def test_killed_sweep_resumes_without_redoing_finished_trials(tmp_path):
    sweep_dir = tmp_path / "s"
    options = ["--total-sequences", "8000", "--checkpoint-every", "64", *TINY]
    argv = ["--trainer", "supervised", "--seeds", "1", "2", "--jobs", "1", "--sweep-dir", str(sweep_dir), "--", *options]
    proc = subprocess.Popen([sys.executable, "-m", "heed.scripts.sweep", *argv], stderr=subprocess.PIPE, text=True)
    first, second = sweep_dir / "base__seed=1", sweep_dir / "base__seed=2"
    deadline = time.monotonic() + 600
    while not (second / "checkpoints" / "latest").exists():  # trial 1 finished, trial 2 under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert sweep.trial_record(sweep.Trial("supervised", "base", 1, (), first))["status"] == "done"
    if sweep.is_done(sweep.Trial("supervised", "base", 2, (), second)):
        pytest.skip("trial 2 finished before the signal arrived (a very fast machine)")
    record = sweep_dir / "trials" / "base__seed=1.json"
    done_record, done_metrics = record.read_text(), (first / "metrics.jsonl").read_text()
    records = sweep_cli.main(sweep_cli.parse(argv))
    assert record.read_text() == done_record and (first / "metrics.jsonl").read_text() == done_metrics
    assert records[1]["status"] == "done" and records[1]["resumed"] and records[1]["attempts"] == 2
    assert _jsonl_last(second / "metrics.jsonl", "sequences") == 8000


def test_toml_file_and_flags(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('trainer = "supervised"\nseeds = [3, 4]\ngrid = ["learning-rate=0.1,0.2"]\n'
                    'options = "--task copy --total-sequences 64"\n')
    cfg = sweep_cli.parse(["--config", str(path), "--seeds", "7"])
    assert cfg.trainer == "supervised" and cfg.seeds == (7,) and cfg.grid == ("learning-rate=0.1,0.2",)
    assert cfg.options == ("--task", "copy", "--total-sequences", "64")
    assert sweep_cli.parse(["--config", str(path), "--", "--task", "sort"]).options == ("--task", "sort")
    path.write_text('trainer = "supervised"\nseed = [3]\n')
    with pytest.raises(HeedError, match="unknown field"):
        sweep_cli.parse(["--config", str(path)])


def test_grid_axis_of_flags_is_not_read_as_a_flag(tmp_path):
    """An axis whose alternatives start with a flag (glimpse's ``--model``) is a grid value, however placed."""
    argv = ["--trainer", "glimpse", "--grid", "--model ram | --model cnn", "glimpses=4,8", "--seeds", "1",
            "--sweep-dir", str(tmp_path), "--", "--dataset", "mnist"]
    cfg = sweep_cli.parse(argv)
    assert cfg.grid == ("--model ram | --model cnn", "glimpses=4,8") and cfg.seeds == (1,)
    assert cfg.options == ("--dataset", "mnist") and cfg.sweep_dir == tmp_path
    trials = sweep.expand(cfg.trainer, list(cfg.seeds), list(cfg.options), list(cfg.grid), tmp_path)
    assert [t.name for t in trials] == ["model=ram__glimpses=4__seed=1", "model=ram__glimpses=8__seed=1",
                                        "model=cnn__glimpses=4__seed=1", "model=cnn__glimpses=8__seed=1"]
    assert sweep_cli.parse(["--seeds", "2", "--grid", "lr=1,2", "--grid", "--model cnn"]).grid == ("lr=1,2", "--model cnn")
    assert sweep_cli.parse(["--seeds", "2"]).grid == ()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra: pip install -e '.[ray]'")
def test_ray_backend_matches_local(tmp_path):
    options = ("--total-sequences", "64", *TINY)
    local = sweep_cli.main(sweep_cli.Config(trainer="supervised", seeds=(1, 2), options=options, sweep_dir=tmp_path / "local"))
    remote = sweep_cli.main(sweep_cli.Config(trainer="supervised", seeds=(1, 2), options=options, sweep_dir=tmp_path / "ray",
                                             backend="ray", jobs=2))
    assert [r["status"] for r in local + remote] == ["done"] * 4
    for seed in (1, 2):
        a = (tmp_path / "local" / f"base__seed={seed}" / "metrics.jsonl").read_text().splitlines()
        b = (tmp_path / "ray" / f"base__seed={seed}" / "metrics.jsonl").read_text().splitlines()
        keys = ("sequences", "eval_bits_per_sequence", "eval_loss")
        assert [[json.loads(r)[k] for k in keys] for r in a] == [[json.loads(r)[k] for k in keys] for r in b]


def _fake_trial(sweep_dir: Path, group: str, seed: int, scalars: dict[str, list[tuple[int, float]]]) -> Path:
    """A finished trial folder as a DQN, PPO or glimpse run leaves it: TensorBoard events only."""
    from torch.utils.tensorboard import SummaryWriter

    run = sweep_dir / f"{group}__seed={seed}"
    with SummaryWriter(str(run)) as writer:
        for tag, points in scalars.items():
            for step, value in points:
                writer.add_scalar(tag, value, step)
    (sweep_dir / "trials").mkdir(exist_ok=True)
    (sweep_dir / "trials" / f"{run.name}.json").write_text(json.dumps({"status": "done", "group": group, "seed": seed}))
    return run


def test_aggregate_and_summarize_every_trainer_kind(tmp_path, capsys):
    from heed.scripts import summarize_runs

    finals = [1.0, 2.0, 3.0, 4.0, 100.0]  # IQM by hand: drop 1 and 100 -> mean(2, 3, 4) = 3
    for seed, final in enumerate(finals):
        _fake_trial(tmp_path, "dqn", seed, {"eval/return": [(100, 0.0), (150, 50.0), (200, final)],
                                        "charts/sps": [(100, 9.0)]})
        _fake_trial(tmp_path, "glimpse", seed, {"eval/test_error": [(50, 50.0), (100, final)]})
        _fake_trial(tmp_path, "ppo", seed, {"charts/success_rate": [(64, final / 100)]})
    rows = aggregate.main(aggregate.Config(sweep_dir=tmp_path, resamples=300))
    got = {(r["group"], r["metric"]): r for r in rows}
    assert set(got) == {("dqn", "eval/return"), ("glimpse", "eval/test_error"), ("ppo", "charts/success_rate")}
    assert got["dqn", "eval/return"]["iqm"] == pytest.approx(3.0) and got["dqn", "eval/return"]["mean"] == pytest.approx(22.0)
    assert got["ppo", "charts/success_rate"]["iqm"] == pytest.approx(0.03)
    # summarize_runs no longer skips runs that have only events (DQN, PPO)
    capsys.readouterr()
    summarize_runs.main(summarize_runs.Config(runs=(tmp_path / "dqn__seed=0", tmp_path / "ppo__seed=0")))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | env | model | steps | eval/return last | eval/return best | charts/success_rate last | charts/success_rate best |"
    assert lines[2] == "| dqn__seed=0 |  |  | 200 | 1 | 50 |  |  |"  # last 1.0, best 50.0 (a return: higher is better)
    assert lines[3] == "| ppo__seed=0 |  |  | 64 |  |  | 0.01 | 0.01 |"


def test_aggregate_rerun_replaces_only_its_own_tensorboard_output(tmp_path):
    """One event file per configuration, replaced (not added to) by a re-run; a user's file stays."""
    from heed.analysis import runs

    for seed, final in enumerate([1.0, 2.0, 3.0]):
        _fake_trial(tmp_path, "dqn", seed, {"eval/return": [(100, 0.0), (200, final)]})
        _fake_trial(tmp_path, "ppo", seed, {"charts/success_rate": [(64, final / 10)], "eval/return": [(64, final)]})
    board = tmp_path / "aggregate" / "tensorboard"
    mine = board / "dqn" / "events.out.tfevents.0.users-own"
    for attempt in range(3):
        aggregate.main(aggregate.Config(sweep_dir=tmp_path, resamples=50))
        if attempt == 0:
            mine.write_bytes(b"the user's events")  # not heed's: a re-run must leave it alone
        for group in ("dqn", "ppo"):
            ours = [p for p in (board / group).iterdir() if "tfevents" in p.name and p != mine]
            assert len(ours) == 1, (attempt, group, ours)
    assert mine.read_bytes() == b"the user's events"
    mine.unlink()
    curves = runs.read_scalars(board / "ppo")  # both metrics of the group in its one file, each step once
    assert set(curves) == {f"{m}/{s}" for m in ("charts/success_rate", "eval/return") for s in ("iqm", "ci_low", "ci_high")}
    assert curves["eval/return/iqm"].values.tolist() == [2.0]


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_event_reader_refuses_what_is_not_a_regular_file(tmp_path, kind):
    """A named pipe named like an event file would block TensorBoard's reader forever: refused, fast."""
    import os
    import threading

    from heed.analysis import runs

    run = _fake_trial(tmp_path, "dqn", 0, {"eval/return": [(1, 1.0)]})
    bad = run / "events.out.tfevents.9.crafted"
    os.mkfifo(bad) if kind == "fifo" else bad.mkdir()
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=_raised(lambda: runs.read_scalars(run))), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the event reader hung"
    assert isinstance(box["result"], HeedError), box
    assert ("not a regular file" if kind == "fifo" else "is a folder") in str(box["result"])
    with pytest.raises(HeedError):
        aggregate.main(aggregate.Config(sweep_dir=tmp_path, resamples=50))
    assert not (tmp_path / "aggregate").exists()


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - handed back to the test
        return exc
    return None


def test_restart_clears_only_an_early_run_folder_this_sweep_started(tmp_path):
    from heed.agents.sweep import Trial, _fresh_dir

    trial = Trial("supervised", "base", 1, (), tmp_path / "base__seed=1")
    trial.dir.mkdir()
    (trial.dir / "notes.txt").write_text("mine")  # a user's folder of the same name, no record
    _fresh_dir(trial)
    assert (trial.dir / "notes.txt").read_text() == "mine"
    trial.record_path.parent.mkdir()
    trial.record_path.write_text("{}")  # even with a record, a folder holding a user's file stays
    _fresh_dir(trial)
    assert (trial.dir / "notes.txt").exists()
    (trial.dir / "notes.txt").unlink()
    for name in ("config.json", "run.json", "metrics.jsonl", "events.out.tfevents.1.host"):
        (trial.dir / name).write_text("{}")
    (trial.dir / "checkpoints").mkdir()
    _fresh_dir(trial)  # what a run killed before its first checkpoint leaves: cleared
    assert not trial.dir.exists()


# --- optuna search -----------------------------------------------------------------------------------------


def test_optuna_search_space_and_checked_corners():
    pytest.importorskip("optuna")
    from heed.agents import sweep_optuna

    axes = [sweep.parse_axis(a) for a in ("learning-rate=log:1e-4..1e-2", "hidden=int:8..12", "model:gru | model:lstm",
                                          "batch-size=8,16")]
    space = sweep_optuna.search_space(axes)
    assert list(space) == ["learning-rate", "hidden", "axis3", "batch-size"]
    assert space["learning-rate"].log and space["hidden"].low == 8 and space["batch-size"].choices == ("batch-size=8", "batch-size=16")
    combo = sweep_optuna.configuration(axes, space, {"batch-size": "batch-size=16", "axis3": "model-lstm",
                                                      "hidden": 9, "learning-rate": 0.0012345})
    assert combo == (["--learning-rate", "0.00123"], ["--hidden", "9"], ["model:lstm"], ["--batch-size", "16"])
    # every alternative and both ends of every range, each checked by the trainer's parser before the study
    corners = sweep_optuna.corners(axes)
    used = {tuple(alt) for c in corners for alt in c}
    assert {("--learning-rate", "0.0001"), ("--learning-rate", "0.01"), ("--hidden", "12"), ("model:gru",),
            ("model:lstm",), ("--batch-size", "16")} <= used and len(corners) == 5


def test_optuna_search_runs_resumes_and_reports_the_best(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    from heed.agents import sweep_optuna

    sweep_dir = tmp_path / "s"
    grid = ("learning-rate=log:1e-3..3e-2", "model:lstm --model.hidden-size 8 | model:gru --model.hidden-size 8")
    options = ("--total-sequences", "64", *TINY[:-3])  # TINY without its model

    def run(samples: int) -> list[dict]:
        return sweep_cli.main(sweep_cli.Config(trainer="supervised", seeds=(1,), grid=grid, options=options, jobs=2,
                                               sweep_dir=sweep_dir, search="optuna", samples=samples, search_seed=3,
                                               objective="eval/bits_per_sequence"))

    records = run(2)
    assert [r["status"] for r in records] == ["done", "done"] and (sweep_dir / "optuna.journal").exists()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna.journal")))
    study = optuna.load_study(study_name="heed", storage=storage)
    # the best configuration is the lowest held-out cost, read by hand from each trial's metrics.jsonl
    finals = {r["group"]: _jsonl_last(sweep_dir / r["dir"] / "metrics.jsonl", "eval_bits_per_sequence") for r in records}
    found = sweep_optuna.best(study)
    assert found["group"] == min(finals, key=finals.get) and found["value"] == pytest.approx(min(finals.values()), rel=1e-5)
    # each trial ran the options its folder names, with the drawn learning rate in range
    for r in records:
        lr = float(r["args"][r["args"].index("--learning-rate") + 1])
        assert 1e-3 * 0.995 <= lr <= 3e-2 * 1.005 and r["group"].startswith(f"learning-rate={lr:.3g}__model-")
    # a sweep killed mid-trial leaves a running study trial: the next run proposes its values again
    cut = study.ask(sweep_optuna.search_space([sweep.parse_axis(a) for a in grid]))
    cut_group = sweep.trials_of("supervised", sweep_optuna.configuration(
        [sweep.parse_axis(a) for a in grid], sweep_optuna.search_space([sweep.parse_axis(a) for a in grid]), cut.params),
        [1], list(options), sweep_dir)[0].group
    before = {p.name: p.read_text() for p in (sweep_dir / "trials").glob("*.json")}
    records = run(3)  # resumes: the two finished configurations are not redone, the study continues to 3
    assert [r["group"] for r in records] == [cut_group] and records[0]["status"] == "done"
    assert all((sweep_dir / "trials" / name).read_text() == text for name, text in before.items())
    study = optuna.load_study(study_name="heed", storage=storage)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
    assert run(3) == []  # nothing left to do
    # a configuration proposed again while the first proposal runs (one choice, two jobs) waits for it, then
    # finds it done: one folder, never two processes in it
    twice = sweep_cli.main(sweep_cli.Config(
        trainer="supervised", seeds=(1,), grid=("learning-rate=0.01",), jobs=2, options=(*options, "model:lstm"),
        sweep_dir=tmp_path / "t", search="optuna", samples=2, objective="eval/bits_per_sequence"))
    assert [r["status"] for r in twice] == ["done", "done"] and twice[0]["attempts"] == twice[1]["attempts"] == 1
    assert len(list((tmp_path / "t").glob("*__seed=1"))) == 1
    # the objective is fixed once measured; without optuna, one line naming the extra
    with pytest.raises(HeedError, match="holds a study to minimize eval/bits_per_sequence"):
        sweep_optuna.load_study(sweep_dir, "eval/loss", "min", 0)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(HeedError, match=r'pip install "heed-attention\[optuna\]"'):
        run(4)


def test_bench_sweep_never_touches_a_work_dir_it_did_not_make(tmp_path):
    """``heed bench-sweep --work-dir`` refuses a folder already holding one of its run folders, before any
    work, and leaves what is there; without --work-dir it removes only the temporary folder it made."""
    from heed.scripts import bench_sweep

    mine = tmp_path / "work" / "sweep0"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("a user's file")
    with pytest.raises(HeedError, match="already holds"):
        bench_sweep.main(bench_sweep.Config(work_dir=tmp_path / "work", rounds=1))
    assert (mine / "notes.txt").read_text() == "a user's file"
