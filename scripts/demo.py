"""heed's demo: what a dueling agent looks at, and what a recurrent network remembers. No training needed.

    python scripts/demo.py                # writes everything under demo/ (about 25 s of CPU time)

1. The bundled Pong agent (``agents/pretrained/pong``; if it is absent, an untrained network, and the
   demo says so) plays; heed writes the value/advantage saliency video of Wang et al. (2016) as mp4
   (two panels, and a Greydanus-style overlay) at game speed and a short GIF, plus a JSON summary of
   where each stream looks (object focus on the ball and paddles, heed.analysis.focus). The method
   is ``--method`` (default: Greydanus et al. 2018 perturbation, see docs/analysis.md).
2. A small LSTM is trained in seconds on cue recall (the answer is the input at step 0) and its
   sequential Jacobian is drawn: input time 0 lights up.
3. Stills, the figure and the summary go to a TensorBoard run.

A re-run replaces what the demo wrote in ``--out-dir``; a file of one of its names there that heed
did not write is left alone, and the demo stops before any work (unless ``--overwrite``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.analysis.agent_video import DEFAULT_METHOD, DEFAULT_REPLACE

ENV_ID = "ALE/Pong-v5"
#: every file the demo writes into --out-dir (besides its tensorboard/ and untrained_agent/ folders)
OUTPUTS = ("pong_saliency_panels.mp4", "pong_saliency_overlay.mp4", "pong_saliency.gif", "pong_saliency.json",
           "sequential_jacobian.png")


@dataclass(frozen=True)
class Config:
    out_dir: Path = Path("demo")
    """where every file goes"""
    checkpoint: Path | None = None
    """a dueling Q-network checkpoint to show instead of the bundled Pong agent"""
    steps: Annotated[int, Range(1, 100_000)] = 450
    """agent steps in the video (30 s of play at game speed, 15 frames/s)"""
    method: str = DEFAULT_METHOD
    """saliency method of the videos (heed.analysis.SALIENCY_METHODS)"""
    replace: Literal["background", "blur"] = DEFAULT_REPLACE
    """perturbation only: blur a region (Greydanus et al.), or replace it by the recording's background screen"""
    gif_frames: Annotated[int, Range(1, 10_000)] = 60
    """frames in the GIF (the first ones of the video)"""
    jacobian_updates: Annotated[int, Range(0, 1_000_000)] = 300
    """Adam updates of the cue-recall LSTM"""
    device: str = "auto"
    """auto, cpu or cuda"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the game, the epsilon draws and the LSTM"""
    threads: Annotated[int, Range(0, 1024)] = 1
    """torch CPU threads (1 is enough here and leaves the other core free)"""
    progress: bool = True
    """show progress bars"""
    overwrite: bool = False
    """replace files of the demo's output names in --out-dir that heed did not write"""


def bundled_agent() -> Path:
    """``agents/pretrained/pong`` inside the installed package."""
    import heed.agents

    return Path(heed.agents.__file__).resolve().parent / "pretrained" / "pong"


def load_agent(cfg: Config, device: torch.device):
    """``(net, env_id, description)``: the given or bundled agent, else a seeded untrained network."""
    from heed.agents.common.checkpoint import WEIGHTS
    from heed.agents.dqn import load_q_network, save_q_network
    from heed.agents.networks import build_q_network

    path = cfg.checkpoint if cfg.checkpoint is not None else bundled_agent()
    if cfg.checkpoint is not None or (path / WEIGHTS).exists():
        net, meta = load_q_network(path, device)
        return net, meta.get("config", {}).get("env_id", ENV_ID), f"trained agent from {path}"
    torch.manual_seed(cfg.seed)
    net = build_q_network((4, 84, 84), 6).to(device).eval()
    saved = save_q_network(cfg.out_dir / "untrained_agent", net, ENV_ID)
    note = (
        f"NOTE: no bundled agent at {path}; showing an UNTRAINED network (saved to {saved}), "
        "so its saliency is not meaningful. Train one with: python scripts/train.py dqn --env ALE/Pong-v5"
    )
    return net, ENV_ID, note


def agent_part(cfg: Config, device: torch.device, writer, files: dict, out: dict[str, Path]) -> dict:
    """Play, compute saliency, write the videos, stills and summary (to the claimed paths ``out``)."""
    from heed.analysis.agent_video import (
        format_summary,
        greedy_policy,
        play,
        render_recording,
        stream_saliency,
        summarize,
        video_frames,
    )
    from heed.analysis.figures import log_image
    from heed.envs.atari import make_atari_env

    net, env_id, description = load_agent(cfg, device)
    print(description)
    env = make_atari_env(env_id, training=False, render_mode="rgb_array")
    names = list(env.unwrapped.get_action_meanings())
    rng = np.random.default_rng(cfg.seed)
    try:
        rec = play(env, greedy_policy(net, 0.01, rng, device), steps=cfg.steps, seed=cfg.seed, progress=cfg.progress)
    finally:
        env.close()
    sal_v, sal_a = stream_saliency(
        net, rec.obs, cfg.method, batch_size=32, device=device, progress=cfg.progress, replace=cfg.replace
    )
    common = {"action_names": names, "progress": cfg.progress, "method": cfg.method}
    files["saliency video (value | advantage)"] = render_recording(
        rec, sal_v, sal_a, out["pong_saliency_panels.mp4"], "panels", **common
    )
    files["saliency video (overlay: value red, advantage blue)"] = render_recording(
        rec, sal_v, sal_a, out["pong_saliency_overlay.mp4"], "overlay", **common
    )
    files["saliency GIF (first frames)"] = render_recording(
        rec, sal_v, sal_a, out["pong_saliency.gif"], "panels", max_frames=cfg.gif_frames, zoom=1, **common
    )
    summary = summarize(rec, sal_v, sal_a, env_id)
    summary.update(agent=description, method=cfg.method, replace=cfg.replace)
    out["pong_saliency.json"].write_text(json.dumps(summary, indent=2))
    files["saliency summary (JSON)"] = out["pong_saliency.json"]
    idx = sorted({int(i) for i in np.linspace(0, len(rec) - 1, 4)})
    for mode in ("panels", "overlay"):
        for i, frame in zip(idx, video_frames(rec, sal_v, sal_a, mode, 99.5, names, idx, method=cfg.method)):
            log_image(writer, f"saliency/{mode}", frame, step=i)
    for i, value in enumerate(rec.values):
        writer.add_scalar("agent/value_estimate", value, i)
    writer.add_text("saliency/summary", f"{description}\n\n```\n{format_summary(summary)}\n```")
    print(format_summary(summary))
    return summary


def jacobian_part(cfg: Config, writer, files: dict, out: dict[str, Path]) -> dict:
    """Train the cue-recall LSTM and draw its sequential Jacobian."""
    from heed.analysis.figures import figure_to_array, log_image, save_figure, sequential_jacobian_figure
    from heed.analysis.sequential import cue_sensitivity_ratio
    from heed.scripts.sequential_jacobian import cue_batch, input_labels, train_cue_lstm

    steps = 24
    model, metrics = train_cue_lstm(steps=steps, updates=cfg.jacobian_updates, seed=cfg.seed, progress=cfg.progress)
    inputs = cue_batch(1, steps, 2, np.random.default_rng(cfg.seed + 7)).inputs
    title = f"LSTM on cue recall (T={steps}; test MSE {metrics['mse']:.4f}, baseline 0.333)"
    fig, matrix, _ = sequential_jacobian_figure(model, inputs, -1, title, input_labels(2), {"cue": 0})
    files["sequential-Jacobian figure"] = save_figure(fig, out["sequential_jacobian.png"])
    log_image(writer, "sequential_jacobian/cue_recall_lstm", figure_to_array(fig))
    ratio = cue_sensitivity_ratio(matrix)
    print(f"cue-recall LSTM: test MSE {metrics['mse']:.4f}; the cue (s=0) is {ratio:.1f}x the largest later input step")
    return {**metrics, "cue_ratio": ratio}


def main(cfg: Config) -> dict:
    """Run the whole demo; returns ``{"files": {...}, "saliency": summary, "jacobian": {...}, "seconds": s}``."""
    from heed.agents.common.device import resolve_device
    from heed.agents.common.run import output_event_writer
    from heed.analysis.saliency import AnalysisError
    from heed.analysis.saliency_methods import get_saliency_method

    validate(cfg)
    try:
        get_saliency_method(cfg.method)
    except AnalysisError as exc:
        raise HeedError(str(exc)) from None
    start = time.perf_counter()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    folder = OutputFolder(cfg.out_dir, cfg.overwrite)
    out = {name: folder.claim(name) for name in OUTPUTS}  # every refusal before any work
    files: dict[str, Path] = {}
    tb_dir = cfg.out_dir / "tensorboard"
    try:
        with disk_errors(cfg.out_dir), output_event_writer(tb_dir, "--out-dir") as writer:
            saliency = agent_part(cfg, device, writer, files, out)
            jacobian = jacobian_part(cfg, writer, files, out)
    except AnalysisError as exc:
        raise HeedError(str(exc)) from None
    files["TensorBoard run (stills, figure, value curve)"] = tb_dir
    seconds = time.perf_counter() - start
    print(f"\ndemo finished in {seconds:.0f} s. Files:")
    for what, path in files.items():
        print(f"  {what:<52} {path}")
    print(f"\nOpen TensorBoard:  tensorboard --logdir {tb_dir}   (then http://localhost:6006, IMAGES tab)")
    print(f"Make your own:     python scripts/render_saliency.py --checkpoint PATH --episodes 1 --out {cfg.out_dir}/mine.mp4")
    return {"files": {k: str(v) for k, v in files.items()}, "saliency": saliency, "jacobian": jacobian, "seconds": seconds}


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="demo.py", description=__doc__)))
