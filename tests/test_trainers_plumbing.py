"""The shared run plumbing as the supervised, PPO and glimpse trainers use it (issues 13 and 21).

One table of tiny runs, one test per root cause over all three trainers: a run folder that holds a run
is refused, a crafted config.json is refused on --resume before anything is built, a forced NaN loss
stops the run and keeps the last finite checkpoint, SIGTERM checkpoints and --resume continues, every
bad flag is one line and exit 2, and a finished run says where it is and how to go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from heed.agents.common.checkpoint import load_latest_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.guards import NonFiniteError, RunInterrupted
from heed.agents.common.session import RunConfig
from heed.agents.cores.gru import GRUConfig
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.trainers import glimpse, ppo, supervised
from heed.agents.trainers import sequence_utils as su

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINERS = {"supervised": supervised, "ppo": ppo, "glimpse": glimpse}
#: the budget field of each trainer and how far one update moves it in the tiny runs below
BUDGET = {"supervised": ("total_sequences", 2), "ppo": ("total_steps", 4), "glimpse": ("steps", 1)}


def tiny(kind: str, run_dir: Path | None = None, updates: int = 3, **kw):
    """A tiny run of trainer ``kind`` that checkpoints after every update."""
    flags = RunConfig(run_dir=run_dir, device="cpu", progress=False)
    field, per_update = BUDGET[kind]
    if kind == "supervised":
        base = dict(task="copy", task_options="max_len=2", model=LSTMConfig(hidden_size=4), batch_size=2,
                    eval_sequences=2, eval_every=10**6, log_every=2, image_every=0, checkpoint_every=2)
    elif kind == "ppo":
        base = dict(core=GRUConfig(hidden_size=4), memory_length=1, n_envs=1, n_steps=4, n_epochs=1, n_minibatches=1,
                    eval_episodes=0, checkpoint_every=4)
    else:
        budget = dataclasses.replace(glimpse.BUDGET, steps=updates * per_update, eval_every=10**6, checkpoint_every=1,
                                     log_every=1)
        base = dict(dataset="mnist", glimpses=1, batch_size=2, hidden=8, core=LSTMConfig(hidden_size=8), eval_size=10,
                    mc_samples=1, budget=budget)
        return glimpse.Config(**{**base, "run": flags, **kw})
    return TRAINERS[kind].Config(**{**base, field: updates * per_update, "run": flags, **kw})


def resume(kind: str, run_dir: Path, budget: int | None = None):
    """A --resume config of trainer ``kind`` (with a new budget when given)."""
    extra = {BUDGET[kind][0]: budget} if budget is not None else {}
    if kind == "glimpse":  # the small trainers nest their budget flags (--steps stays flat)
        extra = {"budget": dataclasses.replace(glimpse.BUDGET, **extra)}
    return TRAINERS[kind].Config(run=RunConfig(resume=run_dir, progress=False), **extra)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _finite(ckpt) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in ckpt.tensors.values() if t.is_floating_point())


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_a_new_run_in_a_folder_holding_a_run_is_refused_and_the_run_kept(tmp_path, kind, capsys):
    run_dir = tmp_path / "run"
    TRAINERS[kind].main(tiny(kind, run_dir))
    out = capsys.readouterr().out
    assert f"done: {kind} run in {run_dir}" in out and f"heed train {kind} --resume {run_dir}" in out
    assert f"tensorboard --logdir {tmp_path}" in out
    before = _files(run_dir)
    with pytest.raises(HeedError, match="already holds a heed run"):
        TRAINERS[kind].main(tiny(kind, run_dir, updates=5))
    assert _files(run_dir) == before
    saved = load_latest_checkpoint(run_dir)
    assert saved.version == 2 and saved.run_id == json.loads((run_dir / "run.json").read_text())["run_id"]
    assert json.loads((run_dir / "run.json").read_text())["device"] == "cpu"


#: a crafted config.json per trainer: an absurd size that must be refused before anything is built
ABSURD = {
    "supervised": ("model", {"name": "ntm", "memory_size": 10**9}, "--memory-size must be in"),
    "ppo": ("core", {"name": "gru", "hidden_size": 10**7}, "--hidden-size must be in"),
    "glimpse": ("glimpses", 10**9, "--glimpses must be in"),
}


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_resume_checks_the_saved_config_before_building_anything(tmp_path, kind, monkeypatch):
    run_dir = tmp_path / "run"
    TRAINERS[kind].main(tiny(kind, run_dir))
    saved = json.loads((run_dir / "config.json").read_text())
    key, value, message = ABSURD[kind]
    (run_dir / "config.json").write_text(json.dumps({**saved, key: value}))

    def no_build(*args, **kwargs):
        raise AssertionError("a model was built from a config that should have been refused")

    import heed.agents.recurrent_policy as policy

    # the one place each trainer builds its model from the (resumed) config
    monkeypatch.setattr(supervised, "build_model", no_build)
    monkeypatch.setattr(policy, "build_core", no_build)
    monkeypatch.setattr(glimpse, "build_model", no_build)
    with pytest.raises(HeedError, match=message) as info:
        TRAINERS[kind].main(resume(kind, run_dir, budget=100))
    assert "config.json" in str(info.value) and "\n" not in str(info.value)
    if kind == "glimpse":  # the learning rate sits in the nested budget flags
        (run_dir / "config.json").write_text(json.dumps({**saved, "budget": {**saved["budget"], "lr": 0.5}}))
        given = {"budget": dataclasses.replace(glimpse.BUDGET, lr=0.1)}
    else:
        (run_dir / "config.json").write_text(json.dumps({**saved, "learning_rate": 0.5}))
        given = {"learning_rate": 0.1}
    monkeypatch.undo()
    with pytest.raises(HeedError, match="--lr cannot change on --resume" if kind == "glimpse" else "cannot change on"):
        TRAINERS[kind].main(dataclasses.replace(resume(kind, run_dir), **given))


def _nan_after(calls: int, fn):
    """``fn`` whose loss (and logged losses) turn NaN from call number ``calls`` on."""
    count = [0]

    def wrapped(*args, **kwargs):
        count[0] += 1
        out = fn(*args, **kwargs)
        if count[0] < calls:
            return out
        if isinstance(out, tuple):  # (loss, stats)
            loss, stats = out
            return loss * float("nan"), {k: float("nan") for k in stats} if isinstance(stats, dict) else stats
        return out * float("nan")

    return wrapped


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path, kind, monkeypatch):
    if kind == "supervised":
        monkeypatch.setattr(su, "sequence_loss", _nan_after(3, su.sequence_loss))
    elif kind == "ppo":
        from heed.agents.recurrent_policy import RecurrentActorCritic

        monkeypatch.setattr(RecurrentActorCritic, "aux_loss", _nan_after(3, RecurrentActorCritic.aux_loss))
    else:
        monkeypatch.setattr(glimpse, "hybrid_loss", _nan_after(3, glimpse.hybrid_loss))
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="diverged at step") as info:
        TRAINERS[kind].main(tiny(kind, run_dir, updates=6))
    assert "\n" not in str(info.value)
    kept = load_latest_checkpoint(run_dir)
    assert kept.step == 2 * BUDGET[kind][1] and _finite(kept)  # the two updates before the NaN


def test_ppo_interrupt_during_an_update_saves_the_last_completed_iteration(tmp_path, monkeypatch):
    """Ctrl-C inside the second update: the checkpoint is the first iteration's, as an uninterrupted run has it."""
    from heed.agents.ppo import RecurrentPPO

    straight = tmp_path / "straight"
    ppo.main(tiny("ppo", straight, updates=1, checkpoint_every=10**6))
    calls = [0]
    train = RecurrentPPO.train

    def interrupted_train(self):
        calls[0] += 1
        stats = train(self)  # the weights move ...
        if calls[0] == 2:
            raise KeyboardInterrupt  # ... and Ctrl-C comes before the iteration completes
        return stats

    monkeypatch.setattr(RecurrentPPO, "train", interrupted_train)
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted, match=f"--resume {run_dir}"):
        ppo.main(tiny("ppo", run_dir, updates=3, checkpoint_every=10**6))
    got, want = load_latest_checkpoint(run_dir), load_latest_checkpoint(straight)
    assert got.step == want.step == 4 and got.counters["iterations"] == 1
    for name, tensor in want.tensors.items():
        assert torch.equal(got.tensors[name], tensor), name


def test_supervised_run_from_before_the_shared_plumbing_resumes(tmp_path):
    """An old run folder: flat run options, the model named in ``core`` with flat sizes, no run.json."""
    run_dir = tmp_path / "old"
    supervised.main(tiny("supervised", run_dir, updates=2))
    saved = json.loads((run_dir / "config.json").read_text())
    model, run = saved.pop("model"), saved.pop("run")
    old = {**saved, **run, "core": model["name"], "hidden_size": model["hidden_size"], "memory_size": None,
           "model_options": "", "device": "cpu"}
    (run_dir / "config.json").write_text(json.dumps(old))
    (run_dir / "run.json").unlink()
    out = supervised.main(resume("supervised", run_dir, budget=8))
    assert out["sequences"] == 8
    assert json.loads((run_dir / "config.json").read_text())["model"] == {"name": "lstm", "hidden_size": 4,
                                                                          "learn_initial_state": False}


@pytest.mark.parametrize("argv", [
    ["supervised", "--learning-rate", "inf"],
    ["supervised", "--clip-grad-norm", "nan"],
    ["supervised", "--batch-size", "0"],
    ["supervised", "model:ntm", "--model.memory-size", "0"],
    ["supervised", "model:lstm", "--model.hidden-size", "0"],
    ["ppo", "--total-steps", "-5"],
    ["ppo", "--n-epochs", "0"],
    ["ppo", "--learning-rate", "inf"],
    ["ppo", "--clip-range", "nan"],
    ["ppo", "--gamma", "nan"],
    ["ppo", "--ent-coef", "nan"],
    ["ppo", "--max-grad-norm", "nan"],
    ["ppo", "core:ntm", "--core.memory-size", "0"],
    ["glimpse", "--patch", "0"],
    ["glimpse", "--hidden", "0"],
    ["glimpse", "--glimpses", "1000000000"],
    ["glimpse", "--patch", "200", "--scales", "4"],
    ["glimpse", "--seed", "-1"],
    ["glimpse", "--threads", "0"],
])
def test_every_bad_number_is_one_line_exit_2_and_no_run_folder(tmp_path, monkeypatch, capsys, argv):
    from heed.scripts.train import run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run(argv[:1] + ["--no-progress"] + argv[1:])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert list(tmp_path.iterdir()) == []


def _train_args(kind: str) -> list[str]:
    """Command-line flags of a tiny run of ``kind`` that would go on for hours (a SIGTERM ends it)."""
    if kind == "supervised":
        return ["--task", "copy", "--task-options", "max_len=2", "--total-sequences", "100000000", "--batch-size", "2",
                "--checkpoint-every", "2", "--eval-every", "100000000", "--log-every", "2", "--image-every", "0",
                "--eval-sequences", "2", "model:lstm", "--model.hidden-size", "4"]
    if kind == "ppo":
        return ["--memory-length", "1", "--total-steps", "100000000", "--n-envs", "1", "--n-steps", "4",
                "--checkpoint-every", "4", "--eval-episodes", "0", "core:gru", "--core.hidden-size", "4"]
    return ["--dataset", "mnist", "--glimpses", "1", "--steps", "100000000", "--batch-size", "2", "--hidden", "8",
            "--eval-size", "10", "--mc-samples", "1", "--eval-every", "100000000", "--checkpoint-every", "1",
            "--log-every", "1", "core:lstm", "--core.hidden-size", "8"]


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_sigterm_checkpoints_exits_130_and_resume_continues(tmp_path, kind):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "heed.scripts.train", kind, "--device", "cpu", "--no-progress",
           "--run-dir", str(run_dir), *_train_args(kind)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "latest").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint within the deadline"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted;") and f"heed train {kind} --resume {run_dir}" in last
    kept = load_latest_checkpoint(run_dir)
    assert kept is not None and kept.step >= BUDGET[kind][1] and _finite(kept)
    budget = kept.step + BUDGET[kind][1]
    out = TRAINERS[kind].main(resume(kind, run_dir, budget=budget))
    assert load_latest_checkpoint(run_dir).step == budget
    assert {"supervised": "sequences", "ppo": "num_timesteps", "glimpse": "step"}[kind] in out


# ------------------------------------------------------------------------------------------------ dqn
# The same root causes for the DQN trainer, on CartPole-v1 (an MLP; one env, so one step per iteration).


def tiny_dqn(run_dir: Path | None = None, steps: int = 12, **kw):
    """A tiny CartPole DQN run: updates from step 8 on, logs and checkpoints every 4 steps."""
    from heed.agents.trainers import dqn

    base = dict(env="CartPole-v1", total_steps=steps, num_envs=1, buffer_size=64, learning_starts=8, batch_size=4,
                train_freq=1, target_update_interval=4, exploration_steps=8, log_interval=4, eval_interval=0,
                eval_episodes=1, checkpoint_interval=4, run=RunConfig(run_dir=run_dir, device="cpu", progress=False))
    return dqn.Config(**{**base, **kw})


def resume_dqn(run_dir: Path, budget: int | None = None, **kw):
    from heed.agents.trainers import dqn

    return dqn.Config(total_steps=budget, run=RunConfig(resume=run_dir, progress=False), **kw)


def test_dqn_new_run_in_a_folder_holding_a_run_is_refused_and_the_run_kept(tmp_path, capsys):
    from heed.agents.trainers import dqn

    run_dir = tmp_path / "run"
    dqn.main(tiny_dqn(run_dir))
    out = capsys.readouterr().out
    assert f"done: dqn run in {run_dir} at step 12" in out and "final: eval/return" in out
    assert f"heed train dqn --resume {run_dir} [--total-steps N]" in out and f"tensorboard --logdir {tmp_path}" in out
    before = _files(run_dir)
    with pytest.raises(HeedError, match="already holds a heed run"):
        dqn.main(tiny_dqn(run_dir, steps=20))
    assert _files(run_dir) == before
    saved = load_latest_checkpoint(run_dir)
    identity = json.loads((run_dir / "run.json").read_text())
    assert saved.version == 2 and saved.run_id == identity["run_id"] and identity["device"] == "cpu"
    assert saved.step == 12 and saved.kind == "dueling-dqn" and saved.meta["train_config"]["run"]["seed"] == 1
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["threads"] == 1 and "torch_threads" not in config


def test_dqn_resume_checks_the_saved_config_before_allocating(tmp_path, monkeypatch):
    from heed.agents.trainers import dqn

    run_dir = tmp_path / "run"
    dqn.main(tiny_dqn(run_dir))
    saved = json.loads((run_dir / "config.json").read_text())

    def no_build(*args, **kwargs):
        raise AssertionError("a replay or network was built from a config that should have been refused")

    monkeypatch.setattr(dqn, "FrameReplayBuffer", no_build)
    monkeypatch.setattr(dqn, "build_q_network", no_build)
    for key, value, message in [("buffer_size", 10**12, "--buffer-size must be in"),
                                ("num_envs", 10**9, "--num-envs must be in"),
                                ("gamma", "nan", "gamma must be a number"),
                                ("learning_rate", float("inf"), "--learning-rate must be > 0")]:
        (run_dir / "config.json").write_text(json.dumps({**saved, key: value}))
        with pytest.raises(HeedError, match=message) as info:
            dqn.main(resume_dqn(run_dir, budget=100))
        assert "config.json" in str(info.value) and "\n" not in str(info.value)
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(HeedError, match="--learning-rate cannot change on --resume"):  # the one override rule
        dqn.main(resume_dqn(run_dir, budget=100, learning_rate=0.5))


@pytest.mark.parametrize("eval_interval, stop", [(0, 16), (2, 14)])
def test_dqn_nan_stops_the_run_and_keeps_the_finite_checkpoint_and_best_network(tmp_path, monkeypatch, eval_interval,
                                                                                stop):
    """The targets turn NaN at the update of step 14 (so do the weights): the loss logged at step 16, or the
    evaluation at step 14 that would have scored and kept the diverged network, stops the run."""
    import heed.agents.dqn as dqn_mechanisms
    from heed.agents.dqn import load_q_network
    from heed.agents.trainers import dqn

    monkeypatch.setattr(dqn_mechanisms, "td_targets", _nan_after(7, dqn_mechanisms.td_targets))
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=f"diverged at step {stop}") as info:
        dqn.main(tiny_dqn(run_dir, steps=40, eval_interval=eval_interval))
    assert "\n" not in str(info.value)
    kept = load_latest_checkpoint(run_dir)
    assert kept.step == 12 and _finite(kept)
    if eval_interval:
        net, meta = load_q_network(run_dir / "best")
        assert meta["counters"]["global_step"] <= 12
        assert all(bool(torch.isfinite(p).all()) for p in net.parameters())
    else:
        assert not (run_dir / "best").exists()


def test_dqn_run_from_before_the_shared_plumbing_resumes(tmp_path):
    """An old run folder (as runs/enduro): flat run options with torch_threads, checkpoint meta without
    format, version or run id, no run.json."""
    from heed.agents.trainers import dqn

    run_dir = tmp_path / "old"
    dqn.main(tiny_dqn(run_dir, steps=8))
    saved = json.loads((run_dir / "config.json").read_text())
    run = saved.pop("run")
    old = {**saved, **{k: v for k, v in run.items() if k != "threads"}, "torch_threads": 0, "device": "cpu"}
    (run_dir / "config.json").write_text(json.dumps(old))
    (run_dir / "run.json").unlink()
    ckpt = load_latest_checkpoint(run_dir)
    old_meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version", "run_id")}
    (ckpt.path / "meta.json").write_text(json.dumps(old_meta))
    dqn.main(resume_dqn(run_dir, budget=12))
    resumed = load_latest_checkpoint(run_dir)
    assert resumed.step == 12 and resumed.counters["global_step"] == 12
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["threads"] == 1 and config["total_steps"] == 12 and "torch_threads" not in config


@pytest.mark.parametrize("argv", [
    ["dqn", "--learning-rate", "inf"],
    ["dqn", "--gamma", "nan"],
    ["dqn", "--per-alpha", "nan"],
    ["dqn", "--max-grad-norm", "nan"],
    ["dqn", "--buffer-size", "1000000000000"],
    ["dqn", "--buffer-size", "4", "--batch-size", "32"],
    ["dqn", "--num-envs", "0"],
    ["dqn", "--total-steps", "0"],
    ["dqn", "--seed", "-1"],
    ["dqn", "--threads", "0"],
    ["dqn", "--torch-threads", "2"],
    ["dqn", "--env", "Pendulum-v1"],
])
def test_dqn_every_bad_flag_is_one_line_exit_2_and_no_run_folder(tmp_path, monkeypatch, capsys, argv):
    test_every_bad_number_is_one_line_exit_2_and_no_run_folder(tmp_path, monkeypatch, capsys, argv)


def test_dqn_sigterm_checkpoints_exits_130_and_resume_continues(tmp_path):
    from heed.agents.trainers import dqn

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "heed.scripts.train", "dqn", "--device", "cpu", "--no-progress", "--run-dir",
           str(run_dir), "--env", "CartPole-v1", "--total-steps", "100000000", "--num-envs", "1", "--buffer-size",
           "64", "--learning-starts", "8", "--batch-size", "4", "--train-freq", "1", "--log-interval", "4",
           "--eval-interval", "0", "--eval-episodes", "1", "--checkpoint-interval", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "latest").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint within the deadline"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted;") and f"heed train dqn --resume {run_dir}" in last
    kept = load_latest_checkpoint(run_dir)
    assert kept is not None and kept.step >= 4 and _finite(kept)
    assert kept.counters["global_step"] == kept.step
    budget = kept.step + 4
    dqn.main(resume_dqn(run_dir, budget=budget))
    after = load_latest_checkpoint(run_dir)
    assert after.step == budget and after.counters["n_updates"] >= kept.counters["n_updates"]
