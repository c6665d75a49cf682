"""Bad input gets one clear line (exit code 2), never a traceback."""

import json
import subprocess
import sys

import pytest
import torch

from heed.agents.common.checkpoint import save_checkpoint
from heed.scripts.train import run


def fails_with(capsys, argv, *fragments):
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1] if err else ""
    text = err if "unknown subcommand" in err else last
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return text


def test_unknown_env_id_suggests_close_matches(capsys):
    fails_with(capsys, ["dqn", "--env", "ALE/Pongg-v5", "--total-steps", "10"], "unknown Atari env id", "ALE/Pong-v5")


def test_unknown_subcommand(capsys):
    fails_with(capsys, ["dqm"], "unknown subcommand", "dqn")


def test_negative_steps(capsys):
    fails_with(capsys, ["dqn", "--total-steps", "-5"], "--total-steps must be >= 1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_without_cuda(capsys, tmp_path):
    fails_with(capsys, ["dqn", "--device", "cuda", "--total-steps", "10", "--run-dir", str(tmp_path / "r")],
               "CUDA is not available")


def test_unwritable_run_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    fails_with(capsys, ["dqn", "--total-steps", "10", "--device", "cpu", "--run-dir", str(blocker / "run")],
               "cannot write the run dir")


def test_resume_without_run(capsys, tmp_path):
    fails_with(capsys, ["dqn", "--resume", str(tmp_path / "nothing")], "cannot resume")


def evaluate_fails(capsys, path, *fragments):
    from heed.agents.common.errors import cli_main
    from heed.scripts.evaluate import Config, main

    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: main(Config(checkpoint=path, episodes=1, progress=False)))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err


def test_checkpoint_of_another_architecture(capsys, tmp_path):
    save_checkpoint(tmp_path / "ntm", {"w": torch.zeros(2)}, {"kind": "sequence-model", "config": {}})
    evaluate_fails(capsys, tmp_path / "ntm", "holds a 'sequence-model' model")


def test_checkpoint_with_wrong_shapes(capsys, tmp_path):
    meta = {"kind": "dueling-dqn", "config": {"env_id": "ALE/Pong-v5", "obs_shape": [4, 84, 84], "n_actions": 6,
                                              "net_arch": [512]}}
    save_checkpoint(tmp_path / "bad", {"value_net.0.weight": torch.zeros(3, 3)}, meta)
    evaluate_fails(capsys, tmp_path / "bad", "does not fit this architecture")


def test_corrupt_checkpoint(capsys, tmp_path):
    d = tmp_path / "corrupt"
    d.mkdir()
    (d / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    (d / "meta.json").write_text(json.dumps({"kind": "dueling-dqn", "config": {}}))
    evaluate_fails(capsys, d, "corrupt")
    (d / "meta.json").write_text("{not json")
    evaluate_fails(capsys, d, "not valid JSON")


def test_missing_checkpoint(capsys, tmp_path):
    evaluate_fails(capsys, tmp_path / "nowhere", "does not exist")


def test_cli_prints_one_line_in_a_real_process():
    proc = subprocess.run([sys.executable, "scripts/train.py", "dqn", "--env", "Pongg", "--total-steps", "10"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown Atari env id")
    assert "Traceback" not in proc.stderr


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_memory_export_never_overwrites_a_foreign_folder(capsys, tmp_path):
    from pathlib import Path

    from heed.agents.common.errors import cli_main
    from heed.scripts.evaluate_memory import Config, main

    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("months of work")
    shipped = Path(__file__).resolve().parents[1] / "agents" / "pretrained" / "ntm-copy"
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: main(Config(checkpoint=shipped, lengths=(5,), sequences=2, batch_size=2, export=target)))
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: refusing to write a checkpoint into")
    assert _snapshot(target) == {"thesis.tex": b"months of work"}


def test_export_replaces_an_existing_checkpoint_only_with_overwrite(capsys, tmp_path):
    from pathlib import Path

    from heed.agents.common.errors import cli_main
    from heed.scripts.evaluate_memory import Config, main

    shipped = Path(__file__).resolve().parents[1] / "agents" / "pretrained" / "ntm-copy"
    target = tmp_path / "agent"
    main(Config(checkpoint=shipped, lengths=(5,), sequences=2, batch_size=2, export=target))
    (target / "weights.safetensors").write_bytes(b"someone's own weights")
    (target / "README.md").write_text("mine")
    before = _snapshot(target)
    with pytest.raises(SystemExit) as exc:  # a checkpoint this command did not write: refused, untouched
        cli_main(lambda: main(Config(checkpoint=shipped, lengths=(5,), sequences=2, batch_size=2, export=target)))
    assert exc.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert _snapshot(target) == before
    main(Config(checkpoint=shipped, lengths=(5,), sequences=2, batch_size=2, export=target, overwrite=True))
    after = _snapshot(target)
    assert after["README.md"] == b"mine" and after["weights.safetensors"] != b"someone's own weights"


def test_package_agent_out_run_does_not_destroy_the_run(capsys, tmp_path):
    import shutil
    from pathlib import Path

    from heed.agents.common.errors import cli_main
    from heed.scripts.package_agent import Config, main

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parents[1] / "agents" / "pretrained" / "pong", run / "best")
    shutil.copy(run / "best" / "config.json", run / "config.json")
    before = _snapshot(run)
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: main(Config(run=run, out=run)))
    assert exc.value.code == 2 and "refusing" in capsys.readouterr().err
    assert _snapshot(run) == before
