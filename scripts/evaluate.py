"""Play a trained dueling DQN agent and report its score (Atari or any env heed's DQN trained on).

    python scripts/evaluate.py --checkpoint agents/pretrained/pong --episodes 10
    python scripts/evaluate.py --checkpoint runs/pong --episodes 3 --video pong.mp4

Full games with unclipped reward (the evaluation protocol of Mnih et al. 2015), epsilon-greedy
with a small epsilon. Videos play at game speed (Atari: 15 agent steps per second, each step 4
emulator frames at 60 Hz). ``--checkpoint`` takes a shipped agent folder, a checkpoint folder, or a run
folder (its latest checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.validate import Range, UnitInterval, validate


@dataclass(frozen=True)
class Config:
    """Evaluate a dueling DQN checkpoint on full Atari games."""

    checkpoint: Path
    """A shipped agent (agents/pretrained/pong), a checkpoint folder or a run folder."""
    episodes: Annotated[int, Range(1, 100_000)] = 10
    """Full games to play."""
    epsilon: Annotated[float, UnitInterval] = 0.01
    """Exploration during evaluation."""
    seed: Annotated[int, Range(0, 2**31 - 1)] = 0
    """Seed of the first game (game i uses seed + i)."""
    video: Path | None = None
    """Write the play of the first game(s) as .mp4 or .gif."""
    video_steps: Annotated[int, Range(1, 1_000_000)] = 5000
    """At most this many frames go into the video."""
    device: str = "auto"
    """auto, cpu or cuda."""
    progress: bool = True
    """Show a progress bar over games."""


def gif_durations(n: int, fps: float) -> list[int]:
    """Per-frame GIF delays in ms (whole centiseconds, as GIF stores them) that keep ``fps`` on average.

    15 per second is 66.7 ms a frame, which GIF cannot hold: the delays alternate 70/60/70 ms so
    that frame i starts at round(i * 1000 / fps) to the centisecond.
    """
    starts = [round(i * 100 / fps) * 10 for i in range(n + 1)]
    return [b - a for a, b in zip(starts[:-1], starts[1:])]


def main(cfg: Config) -> dict:
    """Play, print ``mean ± std`` and return ``{"returns": [...], "mean": m, "std": s}``."""
    validate(cfg)
    if cfg.video is not None and cfg.video.suffix.lower() not in {".mp4", ".gif"}:
        raise HeedError(f"--video must end in .mp4 or .gif, got '{cfg.video.name}'")
    from heed.agents.common.device import resolve_device
    from heed.agents.dqn import load_q_network, play_games, playback_fps

    device = resolve_device(cfg.device)
    net, meta = load_q_network(cfg.checkpoint, device)
    env_id = meta["config"]["env_id"]
    frames: list[np.ndarray] = []
    returns, lengths = [], []
    games = range(cfg.episodes)
    if cfg.progress:
        from tqdm import tqdm

        games = tqdm(games, unit="game", desc=Path(cfg.checkpoint).name)
    for ep in games:  # one game per call, so the bar moves; game ep is seeded with seed + ep
        keep = max(0, cfg.video_steps - len(frames)) if cfg.video is not None else 0
        game = play_games(net, env_id, 1, cfg.epsilon, cfg.seed + ep, record_frames=keep)[0]
        returns.append(game.total)
        lengths.append(game.length)
        frames.extend(game.frames)
    mean, std = float(np.mean(returns)), float(np.std(returns))
    print(f"{env_id}: return {mean:.2f} ± {std:.2f} over {cfg.episodes} games "
          f"(min {min(returns):.0f}, max {max(returns):.0f}, mean length {np.mean(lengths):.0f} steps, epsilon {cfg.epsilon})")
    if cfg.video is not None:
        import imageio.v2 as imageio

        fps = playback_fps(env_id)
        try:
            cfg.video.parent.mkdir(parents=True, exist_ok=True)
            if cfg.video.suffix.lower() == ".gif":
                imageio.mimsave(cfg.video, frames, duration=gif_durations(len(frames), fps), loop=0)
            else:
                imageio.mimsave(cfg.video, frames, fps=fps, codec="libx264", quality=7, macro_block_size=1)
        except OSError as exc:
            raise HeedError(f"cannot write the video '{cfg.video}': {exc.strerror or exc}") from None
        print(f"video: {cfg.video} ({len(frames)} frames at {fps:g} per second: game speed)")
    return {"env_id": env_id, "returns": returns, "lengths": lengths, "mean": mean, "std": std}


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="evaluate.py", description=__doc__)))
