"""Tiny in-process runs of the entry points: render_saliency, sequential_jacobian and the demo."""

import importlib.util
import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from heed.agents.common.errors import HeedError

pytestmark = pytest.mark.usefixtures("one_thread")


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"heed_scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def random_agent(tmp_path_factory):
    from heed.agents.dqn import save_q_network
    from heed.agents.networks import build_q_network

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("agent") / "pong_random"
    save_q_network(path, build_q_network((4, 84, 84), 6), "ALE/Pong-v5")
    return path


def test_render_saliency_writes_video_and_summary(tmp_path, random_agent):
    mod = load_script("render_saliency")
    out = tmp_path / "s.gif"
    cfg = mod.Config(checkpoint=random_agent, steps=5, out=out, mode="overlay", device="cpu", method="gradient",
                     frames="stack", time_window=2, still=tmp_path / "s.png", tensorboard=tmp_path / "tb", stills=2,
                     progress=False)
    summary = mod.main(cfg)
    frames = np.stack(list(iio.imiter(out)))
    assert frames.shape == (5, 34 + 420, 320, 3)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["steps"] == 5 and saved["method"] == "gradient" and saved["map_options"]["frames"] == "stack"
    focus = saved["focus"]
    assert set(focus["value"]["objects"]) == {"ball", "agent_paddle", "opponent_paddle"}
    shares = [r["mass"] for r in focus["advantage"]["objects"].values()]
    assert 0 < sum(shares) <= 1.0 + 1e-6 and -1 <= focus["value_advantage_correlation"] <= 1
    assert summary["video"] == str(out) and list((tmp_path / "tb").glob("events.*"))
    assert iio.imread(tmp_path / "s.png").shape == (34 + 420, 320, 3)
    assert summary["still"] == str(tmp_path / "s.png")
    # a re-run replaces what it wrote (no --overwrite needed) and its stills, not adding a second event file
    mod.main(cfg)
    assert len([p for p in (tmp_path / "tb").iterdir() if "tfevents" in p.name]) == 1


def test_render_saliency_keeps_a_users_files(tmp_path, random_agent):
    mod = load_script("render_saliency")
    (tmp_path / "s.json").write_text("my notes")
    cfg = mod.Config(checkpoint=random_agent, steps=2, out=tmp_path / "s.gif", device="cpu", progress=False)
    with pytest.raises(HeedError, match="not written by heed.*--overwrite"):
        mod.main(cfg)
    assert (tmp_path / "s.json").read_text() == "my notes" and not (tmp_path / "s.gif").exists()


def test_render_saliency_bad_input(tmp_path, random_agent):
    mod = load_script("render_saliency")
    with pytest.raises(HeedError, match="does not exist"):
        mod.main(mod.Config(checkpoint=tmp_path / "nope", steps=2, out=tmp_path / "a.mp4", progress=False))
    with pytest.raises(HeedError, match=r"\.mp4 or \.gif"):
        mod.main(mod.Config(checkpoint=random_agent, steps=2, out=tmp_path / "a.avi", progress=False))
    with pytest.raises(HeedError, match="steps"):
        mod.main(mod.Config(checkpoint=random_agent, steps=0, episodes=0, out=tmp_path / "a.mp4", progress=False))
    with pytest.raises(HeedError, match="Did you mean: smoothgrad"):
        mod.main(mod.Config(checkpoint=random_agent, steps=2, method="smothgrad", out=tmp_path / "a.mp4", progress=False))


def test_sequential_jacobian_script(tmp_path):
    mod = load_script("sequential_jacobian")
    out = tmp_path / "j.png"
    summary = mod.main(mod.Config(out=out, steps=6, hidden=8, updates=3, tensorboard=tmp_path / "tb", progress=False))
    image = iio.imread(out)
    assert image.ndim == 3 and image.shape[0] > 100
    assert summary["steps"] == 6 and len(summary["sensitivity_last_row"]) == 6
    with pytest.raises(HeedError, match="does not exist"):
        mod.main(mod.Config(checkpoint=tmp_path / "missing", out=out, progress=False))


def test_demo_tiny_budget(tmp_path, random_agent):
    mod = load_script("demo")
    cfg = mod.Config(out_dir=tmp_path / "demo", checkpoint=random_agent, steps=4, gif_frames=2,
                     jacobian_updates=2, device="cpu", threads=0, progress=False)
    result = mod.main(cfg)
    files = {k: Path(v) for k, v in result["files"].items()}
    assert all(p.exists() for p in files.values()), files
    video = files["saliency video (value | advantage)"]
    assert np.stack(list(iio.imiter(video))).shape[0] == 4
    assert np.stack(list(iio.imiter(files["saliency GIF (first frames)"]))).shape[:3] == (2, 34 + 210, 2 * 160 + 4)
    assert list((tmp_path / "demo" / "tensorboard").glob("events.*"))
    assert result["saliency"]["steps"] == 4 and result["saliency"]["method"] == mod.DEFAULT_METHOD
    assert result["saliency"]["focus"]["value"]["key"]["objects"] == ["ball", "agent_paddle"]


def test_demo_never_replaces_a_file_it_did_not_write(tmp_path, random_agent):
    mod = load_script("demo")
    out = tmp_path / "demo"
    out.mkdir()
    (out / "pong_saliency.gif").write_bytes(b"the user's gif")
    cfg = mod.Config(out_dir=out, checkpoint=random_agent, steps=2, gif_frames=1, jacobian_updates=1, device="cpu",
                     threads=0, progress=False)
    with pytest.raises(HeedError, match="pong_saliency.gif' exists and was not written by heed"):
        mod.main(cfg)
    assert (out / "pong_saliency.gif").read_bytes() == b"the user's gif"
    assert not any(p.suffix in (".mp4", ".png") for p in out.iterdir()) and not (out / "tensorboard").exists()


def test_demo_falls_back_to_an_untrained_agent(tmp_path, monkeypatch, capsys):
    mod = load_script("demo")
    monkeypatch.setattr(mod, "bundled_agent", lambda: tmp_path / "absent")
    cfg = mod.Config(out_dir=tmp_path / "d", steps=2, gif_frames=1, jacobian_updates=1, device="cpu",
                     threads=0, progress=False)
    _, env_id, note = mod.load_agent(cfg, torch.device("cpu"))
    assert "UNTRAINED" in note and env_id == "ALE/Pong-v5"
    assert (tmp_path / "d" / "untrained_agent" / "meta.json").exists()


def test_bench_saliency_tiny_budget(random_agent, capsys):
    mod = load_script("bench_saliency")
    cfg = mod.Config(checkpoint=random_agent, steps=3, methods=("gradient", "perturbation"), captum_frames=1,
                     rounds=1, sanity_steps=2, sensitivity=False)
    result = mod.main(cfg)
    rows = {r["method"]: r for r in result["methods"]}
    assert {"perturbation (background)", "perturbation (blur)"} <= set(rows)  # one row per replacement
    assert rows["perturbation (blur)"]["captum_equivalent"] == "captum-occlusion"
    assert rows["gradient"]["focus"]["value"]["key"]["objects"] == ["ball", "agent_paddle"]
    assert rows["gradient"]["random_weights_focus"] is not None and "corr_value" in rows["gradient"]["random_heads"] and "| gradient |" in capsys.readouterr().out


def test_bench_saliency_keeps_a_users_json(tmp_path, random_agent):
    mod = load_script("bench_saliency")
    (tmp_path / "bench.json").write_text("my notes")
    cfg = mod.Config(checkpoint=random_agent, steps=1, methods=("gradient",), json_out=tmp_path / "bench.json")
    with pytest.raises(HeedError, match="--overwrite"):
        mod.main(cfg)
    assert (tmp_path / "bench.json").read_text() == "my notes"
