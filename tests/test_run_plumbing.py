"""The shared run plumbing (agents/common): one test per root cause of the reliability report (issue 21)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pytest
import torch
import tyro

from heed.agents.common import checkpoint as ck
from heed.agents.common.checkpoint import (
    checkpoint_meta,
    latest_checkpoint,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
    save_run_checkpoint,
)
from heed.agents.common.errors import HeedError
from heed.agents.common.guards import NonFiniteError, RunInterrupted, check_finite, interruptible
from heed.agents.common.run import Every
from heed.agents.common.safe_io import json_depth, read_json_object
from heed.agents.common.session import ResumeOverride, RunConfig, RunFlags, start_run
from heed.agents.common.validate import AtLeastOne, Positive, Range, UnitInterval, config_from_dict, validate

torch.set_num_threads(1)


@dataclass(frozen=True)
class ToyConfig:
    """A trainer config as the four trainers will declare theirs."""

    total_steps: Annotated[int | None, AtLeastOne, ResumeOverride] = None
    learning_rate: Annotated[float, Positive] = 0.1
    gamma: Annotated[float, UnitInterval] = 0.99
    clip: float = 1.0
    memory_size: Annotated[int, Range(1, 65_536)] = 16
    run: RunFlags = field(default_factory=RunConfig)


def _tensors(value: float = 1.0) -> dict[str, torch.Tensor]:
    return {"w": torch.full((3, 2), value), "b": torch.zeros(2)}


def _within(seconds: float, fn):
    """Run ``fn`` in a daemon thread; fail (not hang) if it has not returned after ``seconds``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"did not return within {seconds} s (a hang)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ flags: tyro nesting, ranges, NaN


def test_run_config_nests_with_flat_flags():
    cfg = tyro.cli(ToyConfig, args=["--seed", "3", "--device", "cpu", "--threads", "2", "--run-dir", "r",
                                    "--resume", "q", "--no-progress", "--learning-rate", "0.5"])
    assert cfg.run == RunConfig(seed=3, device="cpu", threads=2, run_dir=Path("r"), resume=Path("q"), progress=False)
    assert cfg.learning_rate == 0.5
    with pytest.raises(SystemExit):
        tyro.cli(ToyConfig, args=["--run.seed", "3"])


@pytest.mark.parametrize("args, flag", [
    (["--learning-rate", "inf"], "--learning-rate must be > 0, got inf"),
    (["--learning-rate", "nan"], "--learning-rate must be > 0, got nan"),
    (["--learning-rate", "0"], "--learning-rate must be > 0, got 0.0"),
    (["--gamma", "nan"], "--gamma must be in [0, 1], got nan"),
    (["--gamma", "1.5"], "--gamma must be in [0, 1], got 1.5"),
    (["--clip", "nan"], "--clip must be finite, got nan"),  # no declared range: still finite
    (["--clip", "-inf"], "--clip must be finite, got -inf"),
    (["--memory-size", "0"], "--memory-size must be in [1, 65_536], got 0"),
    (["--total-steps", "-5"], "--total-steps must be >= 1, got -5"),
    (["--seed", "-1"], "--seed must be in [0, 4_294_967_295], got -1"),
    (["--threads", "0"], "--threads must be in [1, 1024], got 0"),
])
def test_validate_refuses_bad_numbers_with_the_flag_and_range(args, flag):
    cfg = tyro.cli(ToyConfig, args=args)
    with pytest.raises(HeedError) as info:
        validate(cfg)
    assert str(info.value) == flag


def test_validate_accepts_good_values_and_declared_nonfinite():
    validate(ToyConfig(total_steps=None, learning_rate=1e-4, gamma=1.0))

    @dataclass(frozen=True)
    class Stop:
        stop_at: Annotated[float, Range(nonfinite=True)] = float("inf")

    validate(Stop())
    with pytest.raises(HeedError, match="--stop-at"):
        validate(Stop(stop_at=float("nan")))


def test_config_from_dict_checks_types_and_absurd_sizes_before_building():
    assert config_from_dict(ToyConfig, {"memory_size": 32, "run": {"seed": 2}}).run.seed == 2
    for bad in ({"memory_size": 10**9}, {"memory_size": 1e9}, {"memory_size": "16"}, {"memory_size": True},
                {"learning_rate": None}, {"run": {"threads": 10**12}}, {"run": "x"}, {"hidden": 3}):
        with pytest.raises(HeedError):
            config_from_dict(ToyConfig, bad)


# ------------------------------------------------------------------ the one checkpoint writer


def test_writer_refuses_a_folder_that_is_not_a_checkpoint_and_leaves_it_intact(tmp_path):
    user = tmp_path / "photos"
    (user / "2024").mkdir(parents=True)
    (user / "2024" / "a.jpg").write_bytes(b"\xff\xd8 jpeg")
    (user / "notes.txt").write_text("keep me")
    run = tmp_path / "run"  # package_agent --out RUN: a run folder is not a checkpoint either
    (run / "checkpoints" / "step_0000000001").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    a_file = tmp_path / "file.bin"
    a_file.write_bytes(b"data")
    for target in (user, run, a_file):
        before = _snapshot(target) if target.is_dir() else target.read_bytes()
        with pytest.raises(HeedError, match="refusing"):
            save_checkpoint(target, _tensors(), checkpoint_meta("toy", {}))
        assert (_snapshot(target) if target.is_dir() else target.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", "photos", "run"]  # no temporaries left


def test_writer_replaces_its_own_checkpoint_and_keeps_files_beside_it(tmp_path):
    out = tmp_path / "agent"
    save_checkpoint(out, _tensors(1.0), checkpoint_meta("toy", {"a": 1}))
    (out / "learning_curve.csv").write_text("tag,step,value\n")
    save_checkpoint(out, _tensors(2.0), checkpoint_meta("toy", {"a": 2}))
    loaded = load_checkpoint(out, expect_kind="toy")
    assert loaded.config == {"a": 2} and float(loaded.tensors["w"][0, 0]) == 2.0
    assert (out / "learning_curve.csv").read_text() == "tag,step,value\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent"]
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", _tensors(), checkpoint_meta("toy", {}))  # an empty folder is fine


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_is_one_line_and_removes_the_partial_write(tmp_path, monkeypatch, code):
    save_run_checkpoint(tmp_path, 1, _tensors(1.0), checkpoint_meta("toy", {}, run_id="r"))
    calls = []

    def failing(path, data):
        calls.append(path)
        Path(path).write_bytes(data[:10])  # a partial file in the temporary folder, then the disk fails
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ck, "write_bytes_durable", failing)
    with pytest.raises(HeedError) as info:
        save_run_checkpoint(tmp_path, 2, _tensors(2.0), checkpoint_meta("toy", {}, run_id="r"))
    assert calls and "\n" not in str(info.value) and os.strerror(code) in str(info.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_0000000001"]
    assert float(load_latest_checkpoint(tmp_path).tensors["w"][0, 0]) == 1.0


def test_a_real_file_size_limit_gives_one_line_and_exit_2(tmp_path):
    """RLIMIT_FSIZE makes write() fail like a full disk, also for root."""
    script = f"""
import resource, signal, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from heed.agents.common.checkpoint import checkpoint_meta, save_checkpoint
from heed.agents.common.errors import cli_main
cli_main(lambda: save_checkpoint({str(tmp_path / 'ck')!r}, {{'w': torch.ones(200_000)}}, checkpoint_meta('toy', {{}})))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: cannot write") and len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_read_only_run_folder_gives_one_line(tmp_path):
    run = tmp_path / "run"
    save_run_checkpoint(run, 1, _tensors(), checkpoint_meta("toy", {}))
    os.chmod(run / "checkpoints", 0o500)
    try:
        with pytest.raises(HeedError, match="cannot write"):
            save_run_checkpoint(run, 2, _tensors(), checkpoint_meta("toy", {}))
    finally:
        os.chmod(run / "checkpoints", 0o700)
    assert latest_checkpoint(run).name == "step_0000000001"


# ------------------------------------------------------------------ the safe reader and loaders


def _crafted_meta(tmp_path: Path, case: str) -> Path:
    ckpt = tmp_path / case
    save_checkpoint(ckpt, _tensors(), checkpoint_meta("toy", {}))
    meta = ckpt / "meta.json"
    meta.unlink()
    if case == "latin1":
        meta.write_bytes('{"kind": "caf\xe9"}'.encode("latin-1"))
    elif case == "deep":
        meta.write_text("[" * 5000 + "]" * 5000)
    elif case == "folder":
        meta.mkdir()
    elif case == "fifo":
        os.mkfifo(meta)
    elif case == "huge":
        with open(meta, "wb") as f:
            f.truncate(64 * 1024 * 1024)  # sparse: no disk used
    elif case == "symlink-out":
        outside = tmp_path / "outside.json"
        outside.write_text('{"kind": "toy"}')
        meta.symlink_to(outside)
    elif case == "list":
        meta.write_text("[1, 2]")
    elif case == "bad-types":
        meta.write_text('{"kind": "toy", "config": [1], "counters": 3}')
    return ckpt


@pytest.mark.parametrize("case", ["latin1", "deep", "folder", "fifo", "huge", "symlink-out", "list", "bad-types"])
def test_crafted_meta_json_gets_one_heed_error_and_no_hang(tmp_path, case):
    ckpt = _crafted_meta(tmp_path, case)
    with pytest.raises(HeedError) as info:
        _within(20, lambda: load_checkpoint(ckpt))
    assert "\n" not in str(info.value)


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth('{"a": [1, {"b": "[[[{{{"}]}') == 3
    assert json_depth("[]") == 1 and json_depth('"x"') == 0


def test_weights_as_fifo_is_refused_without_blocking(tmp_path):
    ckpt = tmp_path / "c"
    save_checkpoint(ckpt, _tensors(), checkpoint_meta("toy", {}))
    (ckpt / "weights.safetensors").unlink()
    os.mkfifo(ckpt / "weights.safetensors")
    with pytest.raises(HeedError):
        _within(20, lambda: load_checkpoint(ckpt))


def test_latest_marker_out_of_the_run_or_binary_is_ignored(tmp_path):
    victim = tmp_path / "elsewhere" / "step_0000000009"
    save_checkpoint(victim, _tensors(9.0), checkpoint_meta("toy", {}))
    run = tmp_path / "a" / "b" / "run"
    save_run_checkpoint(run, 1, _tensors(1.0), checkpoint_meta("toy", {}))
    marker = run / "checkpoints" / "latest"
    for content in (b"../../../../elsewhere/step_0000000009", str(victim).encode(), b"\x00\xff\xfe binary",
                    b"step_1/../../x"):
        marker.write_bytes(content)
        assert latest_checkpoint(run).name == "step_0000000001"
    (run / "checkpoints" / "step_0000000007").symlink_to(victim, target_is_directory=True)
    marker.write_bytes(b"step_0000000007")
    assert latest_checkpoint(run).name == "step_0000000001"  # a symlinked step folder is not followed
    marker.unlink()
    os.mkfifo(marker)
    assert _within(20, lambda: latest_checkpoint(run)).name == "step_0000000001"


def test_corrupt_newest_checkpoint_falls_back_to_the_older_valid_one(tmp_path, capsys):
    for step in (1, 2):
        save_run_checkpoint(tmp_path, step, _tensors(float(step)), checkpoint_meta("toy", {}, run_id="r"))
    newest = tmp_path / "checkpoints" / "step_0000000002" / "weights.safetensors"
    newest.write_bytes(newest.read_bytes()[:40])  # torn
    loaded = load_latest_checkpoint(tmp_path, "toy")
    assert loaded.step == 1 and float(loaded.tensors["w"][0, 0]) == 1.0
    assert "step_0000000002" in capsys.readouterr().err
    (tmp_path / "checkpoints" / "step_0000000002" / "meta.json").write_bytes(b"\x80\x81")
    assert load_latest_checkpoint(tmp_path, "toy").step == 1
    with pytest.raises(HeedError, match="not other"):  # another kind is an error, not damage
        load_latest_checkpoint(tmp_path, "other")


def test_pruning_leaves_another_runs_checkpoints_and_stale_foreign_folders(tmp_path):
    for step in (1, 2, 3):
        save_run_checkpoint(tmp_path, step, _tensors(), checkpoint_meta("toy", {}, run_id="old"))
    ckpts = tmp_path / "checkpoints"
    stale = ckpts / "step_0000000050.abc123.tmp"  # a killed write of ours
    stale.mkdir()
    (stale / "weights.safetensors").write_bytes(b"partial")
    foreign = ckpts / "step_notes.tmp"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("not heed's")
    for step in (10, 20, 30):
        save_run_checkpoint(tmp_path, step, _tensors(), checkpoint_meta("toy", {}, run_id="new"))
    names = sorted(p.name for p in ckpts.iterdir())
    assert names == ["latest", "step_0000000002", "step_0000000003", "step_0000000020", "step_0000000030",
                     "step_notes.tmp"]
    assert (foreign / "mine.txt").read_text() == "not heed's"


def test_pruning_deletes_only_checkpoint_files_and_never_without_a_run_id(tmp_path):
    ckpts = tmp_path / "checkpoints"
    save_run_checkpoint(tmp_path, 1, _tensors(), checkpoint_meta("toy", {}, run_id="r"))
    (ckpts / "step_0000000001" / "curve.csv").write_text("a user's file beside a checkpoint")
    for step in (2, 3):
        save_run_checkpoint(tmp_path, step, _tensors(), checkpoint_meta("toy", {}, run_id="r"))
    assert sorted(p.name for p in (ckpts / "step_0000000001").iterdir()) == ["curve.csv"]  # pruned, file kept
    unreadable = ckpts / "step_0000000000"
    unreadable.mkdir()
    (unreadable / "weights.safetensors").write_bytes(b"x")
    (unreadable / "meta.json").write_bytes(b"\xff not json")
    for step in (4, 5):  # no run id: nothing can be proven this run's own, nothing is pruned
        save_run_checkpoint(tmp_path, step, _tensors(), checkpoint_meta("toy", {}))
    assert unreadable.is_dir() and (ckpts / "step_0000000002").is_dir()


# ------------------------------------------------------------------ NaN guard, interrupts, schedule


def test_nan_guard_stops_and_keeps_the_last_finite_checkpoint(tmp_path):
    run = start_run("toy", ToyConfig(run=RunConfig(run_dir=tmp_path / "run", device="cpu")))
    model = torch.nn.Linear(2, 1)
    saved = []
    with pytest.raises(NonFiniteError, match="diverged at step 3"):
        for step in range(1, 10):
            if step == 3:
                with torch.no_grad():
                    model.weight.fill_(float("nan"))
            loss = model(torch.ones(4, 2)).pow(2).mean()
            try:
                saved.append(run.save(step, model.state_dict(), {}, keep=1))
            except NonFiniteError:
                pass  # the writer refuses: nothing non-finite reaches the disk
            run.log_scalars("losses", {"loss": loss.item()}, step)
    assert [p.name for p in saved] == ["step_0000000001", "step_0000000002"]
    kept = load_latest_checkpoint(run.dir, "toy")
    assert kept.step == 2 and all(bool(torch.isfinite(t).all()) for t in kept.tensors.values())
    with pytest.raises(NonFiniteError):
        check_finite({"losses/loss": torch.tensor(float("inf"))}, 5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_once_and_raise_the_resume_line(sig):
    before = signal.getsignal(signal.SIGTERM)
    saves = []
    with pytest.raises(RunInterrupted) as info, interruptible(lambda: saves.append(1), "resume: heed train x"):
        os.kill(os.getpid(), sig)
        for _ in range(1000):
            threading.Event().wait(0.01)
    assert saves == [1] and str(info.value) == "resume: heed train x"
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_exits_130_with_one_line(tmp_path):
    script = """
import os, signal, time
from heed.agents.common.errors import cli_main
from heed.agents.common.guards import interruptible
def main():
    with interruptible(lambda: print('saved'), 'interrupted; continue with: heed train toy --resume R'):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
cli_main(main)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and proc.stdout == "saved\n"
    assert proc.stderr.strip() == "interrupted; continue with: heed train toy --resume R"


def test_every_matches_a_brute_force_count():
    for n, stride, start in ((100, 32, 0), (7, 3, 0), (10, 10, 40), (5, 13, 2)):
        every = Every(n, start)
        fired = [s for s in range(start + stride, 1000, stride) if every.due(s)]
        prev = start
        expected = []
        for s in range(start + stride, 1000, stride):
            if any(m % n == 0 for m in range(prev + 1, s + 1)):
                expected.append(s)
                prev = s
        assert fired == expected
    assert not any(Every(0).due(s) for s in range(100))


# ------------------------------------------------------------------ run folders and resume


def _toy_main(cfg: ToyConfig) -> tuple:
    """A tiny trainer written as the four trainers will be: returns (run, final step)."""
    run = start_run("toy", cfg, name="toy", metric_tags=("eval/score",))
    cfg = run.cfg
    model = torch.nn.Linear(2, 1)
    if run.checkpoint is not None:
        model.load_state_dict(run.checkpoint.tensors)
    step, every = run.start_step, Every(2, run.start_step)
    total = cfg.total_steps or 4
    while step < total:
        step += 1
        run.log_scalars("losses", {"loss": float(model.weight.detach().sum() ** 2)}, step)
        run.append_metrics(step, {"loss": 0.0})
        if every.due(step):
            run.save(step, model.state_dict(), {"learning_rate": cfg.learning_rate})
    run.save(step, model.state_dict(), {})
    run.finish({"eval/score": 1.0}, "--total-steps", step)
    return run, step


def test_resume_override_rule(tmp_path):
    d = tmp_path / "run"
    first, _ = _toy_main(ToyConfig(learning_rate=0.5, run=RunConfig(run_dir=d, seed=7, device="cpu")))
    run, step = _toy_main(ToyConfig(total_steps=6, run=RunConfig(resume=d, threads=2, progress=False)))
    assert step == 6 and run.run_id == first.run_id
    assert run.cfg.learning_rate == 0.5 and run.cfg.run.seed == 7  # from config.json
    assert run.cfg.run.threads == 2 and run.cfg.run.progress is False and run.cfg.run.device == "auto"
    assert json.loads((d / "config.json").read_text())["total_steps"] == 6  # the new budget is kept
    for refused in (ToyConfig(learning_rate=0.3, run=RunConfig(resume=d)), ToyConfig(run=RunConfig(resume=d, seed=3)),
                    ToyConfig(run=RunConfig(resume=d, run_dir=tmp_path / "other"))):
        with pytest.raises(HeedError, match="cannot change on --resume"):
            _toy_main(refused)
    saved = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**saved, "memory_size": 10**9}))
    with pytest.raises(HeedError, match="config.json: --memory-size must be in"):
        _toy_main(ToyConfig(run=RunConfig(resume=d)))


def test_resume_drops_metrics_rows_after_the_checkpoint(tmp_path):
    d = tmp_path / "run"
    _toy_main(ToyConfig(total_steps=4, run=RunConfig(run_dir=d, device="cpu")))
    with open(d / "metrics.jsonl", "a") as f:  # a killed process logged steps 5-6 and tore a line
        f.write('{"step": 5, "loss": 1}\n{"step": 6, "loss": 1}\n{"step": 7, "lo')
    _toy_main(ToyConfig(total_steps=5, run=RunConfig(resume=d)))
    steps = [json.loads(line)["step"] for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_run_folder_guard(tmp_path):
    d = tmp_path / "run"
    _toy_main(ToyConfig(run=RunConfig(run_dir=d, device="cpu")))
    with pytest.raises(HeedError, match="already holds a heed run"):
        _toy_main(ToyConfig(run=RunConfig(run_dir=d)))
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("x")
    with pytest.raises(HeedError, match="not empty and was not made by heed"):
        _toy_main(ToyConfig(run=RunConfig(run_dir=foreign)))
    assert [p.name for p in foreign.iterdir()] == ["chapter1.tex"]
    with pytest.raises(HeedError, match="holds no heed run"):
        _toy_main(ToyConfig(run=RunConfig(resume=foreign)))
    with pytest.raises(HeedError, match="no such folder"):
        _toy_main(ToyConfig(run=RunConfig(resume=tmp_path / "missing")))
    other = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**other, "kind": "ppo"}))
    with pytest.raises(HeedError, match="holds a 'ppo' run"):
        _toy_main(ToyConfig(run=RunConfig(resume=d)))
    empty = tmp_path / "empty"
    empty.mkdir()
    _toy_main(ToyConfig(run=RunConfig(run_dir=empty, device="cpu")))  # an empty folder is fine


def test_tensorboard_hparams_and_resolved_device(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    run, _ = _toy_main(ToyConfig(run=RunConfig(run_dir=tmp_path / "run", device="auto")))
    plugins, tags = set(), set()
    for events in run.dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                tags.add(value.tag)
                plugins.add(value.metadata.plugin_data.plugin_name)
                if value.tag == "_hparams_/session_start_info":
                    assert b"device_resolved" in value.metadata.plugin_data.content
    assert "hparams" in plugins and "losses/loss" in tags
    assert json.loads((run.dir / "run.json").read_text())["device"] == str(run.device) != "auto"


def test_legacy_flat_config_json_resumes(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"total_steps": 2, "learning_rate": 0.2, "seed": 4, "device": "cpu",
                                               "threads": 1, "run_dir": str(d), "resume": None, "progress": True}))
    save_run_checkpoint(d, 2, {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)}, {"kind": "toy", "config": {}})
    run, step = _toy_main(ToyConfig(total_steps=3, run=RunConfig(resume=d)))
    assert step == 3 and run.cfg.learning_rate == 0.2 and run.cfg.run.seed == 4


def test_config_json_crafted_is_refused_on_resume(tmp_path):
    d = tmp_path / "run"
    _toy_main(ToyConfig(run=RunConfig(run_dir=d, device="cpu")))
    (d / "config.json").unlink()
    os.mkfifo(d / "config.json")
    with pytest.raises(HeedError, match="not a regular file"):
        _within(20, lambda: _toy_main(ToyConfig(run=RunConfig(resume=d))))
    with pytest.raises(HeedError):
        read_json_object(d / "run.json", max_bytes=10)


def test_shipped_checkpoints_still_load():
    root = Path(__file__).resolve().parents[1] / "agents" / "pretrained"
    for name in ("ntm-copy", "pong"):
        loaded = load_checkpoint(root / name)
        assert loaded.version == 1 and loaded.tensors


def test_meta_schema_round_trip(tmp_path):
    meta = checkpoint_meta("toy", {"a": 1}, {"episodes": 3}, step=5, run_id="abc", rng={"s": 1})
    save_checkpoint(tmp_path / "c", _tensors(), meta)
    loaded = load_checkpoint(tmp_path / "c", "toy")
    assert (loaded.kind, loaded.step, loaded.run_id, loaded.version, loaded.counters) == ("toy", 5, "abc", 2,
                                                                                          {"episodes": 3})
    assert loaded.meta["rng"] == {"s": 1}
    future = dict(meta, version=99)
    (tmp_path / "c" / "meta.json").write_text(json.dumps(future))
    with pytest.raises(HeedError, match="upgrade heed"):
        load_checkpoint(tmp_path / "c")
    assert dataclasses.is_dataclass(RunConfig)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_resolves_to_cuda_and_cuda_tensors_checkpoint(tmp_path):
    run = start_run("toy", ToyConfig(run=RunConfig(run_dir=tmp_path / "run")))
    assert run.device.type == "cuda"
    model = torch.nn.Linear(2, 1).to(run.device)
    run.save(1, model.state_dict(), {})
    loaded = load_latest_checkpoint(run.dir, "toy")
    assert torch.equal(loaded.tensors["weight"], model.weight.detach().cpu())
    with pytest.raises(NonFiniteError):
        run.log_scalars("losses", {"loss": torch.tensor(float("nan"), device=run.device)}, 2)


def test_atomic_write_never_touches_a_users_file_named_like_a_temporary(tmp_path):
    from heed.agents.common.safe_io import write_json_atomic

    (tmp_path / "config.json.tmp").write_text("mine")
    write_json_atomic(tmp_path / "config.json", {"a": 1})
    assert (tmp_path / "config.json.tmp").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "config.json.tmp"]  # no leftover


def test_step_budget_counts_updates_and_cpu_and_saves_once_per_update():
    import time as _time

    import numpy as np
    import torch

    from heed.agents.common.state import StepBudget

    class FakeRun:
        resumed = False

        def __init__(self):
            self.saved = []

        def save(self, step, tensors, config, counters, optimizer, **extra):
            self.saved.append((step, dict(counters), extra))

    run = FakeRun()
    budget = StepBudget(run, {"step": 3, "seconds": 1.0, "cpu_seconds": 0.0}, steps=10, max_cpu_seconds=0.0)
    assert budget.progress() == 0.3 and budget.start == 3
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    budget.save(model, {}, opt, np.random.default_rng(0))
    budget.save(model, {}, opt, np.random.default_rng(0))  # the same update: not saved twice
    assert [s[0] for s in run.saved] == [3]
    assert budget.step() == 4 and budget.progress() == 0.4
    budget.save(model, {}, opt, np.random.default_rng(0), tag="x")
    assert run.saved[-1][0] == 4 and run.saved[-1][1]["step"] == 4 and run.saved[-1][2]["tag"] == "x"
    assert run.saved[-1][1]["seconds"] >= 1.0 and "rng" in run.saved[-1][2]
    # the CPU-time budget: burn CPU, count it; then burn more but pause: not counted
    cpu = StepBudget(run, StepBudget.INITIAL, steps=10**9, max_cpu_seconds=0.05)
    end = _time.process_time() + 0.06
    while _time.process_time() < end:
        pass
    cpu.step()
    assert cpu.cpu_seconds >= 0.05 and cpu.progress() >= 1.0
    before = cpu.cpu_seconds
    end = _time.process_time() + 0.03
    while _time.process_time() < end:
        pass
    cpu.pause()
    cpu.step()
    assert cpu.cpu_seconds - before < 0.02
