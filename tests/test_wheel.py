"""A wheel built from the repository installs into a fresh venv, and its ``heed`` console script trains.

The fresh venv gets only the wheel (``--no-deps``); its dependencies (torch, gymnasium, ...) are made
visible through a ``.pth`` line naming this interpreter's site-packages, so nothing is downloaded. A
``.pth`` line adds a directory to ``sys.path`` without running the ``.pth`` files inside it, so the
editable install of the checkout is NOT visible there: the run imports the wheel's own copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    # build from a copy, so the build/ folder setuptools makes never lands in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info", "__pycache__"))
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        check=True, capture_output=True,
    )
    (wheel,) = dist.glob("heed_attention-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "heed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    return env_dir


def test_wheel_imports_its_own_copy(wheel_env: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [wheel_env / "bin" / "python", "-c", "import heed.agents, heed.envs, heed.analysis; print(heed.agents.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout
    assert str(wheel_env) in out and str(ROOT) not in out
    # the shipped agents travel inside the wheel
    pretrained = Path(out.strip()).parent / "pretrained"
    assert (pretrained / "pong" / "weights.safetensors").exists()
    assert (pretrained / "ntm-copy" / "weights.safetensors").exists()


def test_wheel_console_script_trains_a_tiny_run(wheel_env: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [wheel_env / "bin" / "heed", "train", "supervised", *TINY_SUPERVISED, "--run-dir", str(run_dir)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "config.json").exists()
    assert (run_dir / "checkpoints" / "latest").exists()


def test_gymnasium_finds_heed_ids_in_the_wheel_without_importing_heed(wheel_env: Path, tmp_path: Path) -> None:
    code = "import gymnasium as gym; e = gym.make('heed/Copy-v0'); e.reset(seed=0); print(type(e.unwrapped).__module__)"
    out = subprocess.run([wheel_env / "bin" / "python", "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout
    assert out.strip().startswith("heed.envs")


#: a supervised run of a few seconds (the flags of `heed train supervised`)
TINY_SUPERVISED = [
    "--task", "copy", "--task-options", "max_len=3", "--total-sequences", "64", "--batch-size", "8",
    "--eval-every", "32", "--eval-sequences", "8", "--log-every", "32", "--checkpoint-every", "64",
    "--no-progress",
]
