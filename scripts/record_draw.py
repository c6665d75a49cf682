"""Watch a trained DRAW draw: a video of the canvas step by step with the write window (and read window).

    python scripts/record_draw.py --run-dir runs/draw --out docs/figures/glimpse --video gif

Writes ``<out>/draw_canvas.{gif,mp4}``: the top row reconstructs held-out digits (red: the write window,
green: the read window, each ``N x delta`` pixels wide around its centre), the bottom row draws new
digits from the prior (write window only); one frame per drawing step, the last held. Also
``<out>/draw_steps.png``: the same canvases at every step, side by side. Canvases show
``sigmoid(c_t)``. Files of these names are replaced only when heed wrote them (or with ``--overwrite``).

For an attentive model it also prints how far the write window sweeps while reconstructing
``--measure-count`` held-out digits (:func:`heed.agents.glimpse.draw.write_sweep`: the centre's spread
and path over the steps, the stride at the first and last step); they are returned under ``"sweep"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.checkpoint import load_checkpoint, load_module_state
from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate

WRITE_COLOUR = (255, 40, 40)
READ_COLOUR = (40, 220, 40)


@dataclass(frozen=True)
class Config:
    """The canvas video of a trained DRAW."""

    run_dir: str
    """A draw run folder (its latest checkpoint) or a checkpoint folder."""
    out: str | None = None
    """Output folder (default: <run_dir>/recordings)."""
    count: Annotated[int, Range(1, 16)] = 4
    """Digits per row (reconstructed above, generated below)."""
    seed: Annotated[int, SeedRange] = 0
    """Seed for the test digits shown and the latent samples."""
    video: Literal["gif", "mp4"] = "gif"
    """Video format: gif or mp4."""
    fps: Annotated[float, Range(0.1, 240)] = 4.0
    """Drawing steps per second."""
    scale: Annotated[int, Range(1, 32)] = 4
    """Pixel upscaling of the frames."""
    measure_count: Annotated[int, Range(1, 1000)] = 128
    """Held-out digits (the first of the fixed test set) over which the write window's sweep is measured."""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


def _boxes(params, b: int, colour: tuple[int, int, int], n: int) -> list:
    """The window of image ``b`` as a ``(cx, cy, side, colour)`` box (1-indexed centre -> continuous)."""
    if params is None:
        return []
    return [(float(params.gx[b]) - 0.5, float(params.gy[b]) - 0.5, n * float(params.delta[b]), colour)]


def main(cfg: Config) -> dict:
    """Write the video and the still; returns their paths (and, with attention, the sweep measures)."""
    from heed.agents.common.validate import config_from_dict
    from heed.agents.glimpse.draw import Draw, write_sweep
    from heed.agents.trainers.draw import Config as TrainConfig
    from heed.agents.trainers.draw import binarised_test_set
    from heed.analysis.glimpse_figures import window_frame
    from heed.analysis.video import write_video

    validate(cfg)
    if cfg.video not in ("gif", "mp4"):
        raise HeedError(f"unknown --video '{cfg.video}': use gif or mp4")
    torch.set_num_threads(1)
    ckpt = load_checkpoint(cfg.run_dir)
    if ckpt.kind != "draw":
        raise HeedError(f"'{cfg.run_dir}' holds a '{ckpt.kind}' checkpoint, not a DRAW model")
    train_cfg = config_from_dict(TrainConfig, ckpt.config, "the checkpoint's draw config")
    out_dir = Path(cfg.out) if cfg.out else Path(ckpt.path).parents[1] / "recordings"
    folder = OutputFolder(out_dir, cfg.overwrite, "--out")
    video, still = folder.claim(f"draw_canvas.{cfg.video}"), folder.claim("draw_steps.png")
    model = Draw(train_cfg.model)
    load_module_state(model, ckpt.tensors, where=str(ckpt.path))
    model.eval()
    rng = np.random.default_rng(cfg.seed)
    test = binarised_test_set(train_cfg.source, 1000)
    x = torch.from_numpy(test[np.sort(rng.permutation(len(test))[: cfg.count])])
    torch.manual_seed(cfg.seed)
    recon = model.record(x)
    drawn = model.generate(cfg.count, torch.Generator().manual_seed(cfg.seed))
    m = train_cfg.model
    frames = []
    for t in range(m.time_steps):
        top = [window_frame(torch.sigmoid(recon[t].canvas[b]).numpy(),
                            _boxes(recon[t].write, b, WRITE_COLOUR, m.write_size)
                            + _boxes(recon[t].read, b, READ_COLOUR, m.read_size), cfg.scale)
               for b in range(cfg.count)]
        bottom = [window_frame(torch.sigmoid(drawn[t].canvas[b]).numpy(),
                               _boxes(drawn[t].write, b, WRITE_COLOUR, m.write_size), cfg.scale)
                  for b in range(cfg.count)]
        frames.append(np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0))
    import imageio.v2 as imageio

    with disk_errors(out_dir):
        video = write_video(video, frames + [frames[-1]] * max(1, round(cfg.fps)), fps=cfg.fps)
        canvases = [torch.sigmoid(s.canvas).numpy() for s in (*recon, *drawn)]  # 2T x [count, H, W]
        rows = [np.concatenate(list(np.stack(canvases[i * m.time_steps:(i + 1) * m.time_steps], 1)[b]), 1)
                for i in range(2) for b in range(cfg.count)]
        imageio.imwrite(still, (np.clip(np.concatenate(rows, 0), 0, 1) * 255).astype(np.uint8))
    print(f"wrote {video} and {still}")
    result: dict = {"video": video, "still": still}
    if m.attention:
        torch.manual_seed(cfg.seed)
        sweep = write_sweep(model.record(torch.from_numpy(test[: cfg.measure_count])), m.write_size)
        print(f"write window over {min(cfg.measure_count, len(test))} held-out digits (medians, px): "
              + ", ".join(f"{k} {v:.2f}" for k, v in sweep.items()))
        result["sweep"] = sweep
    return result


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="record_draw.py", description=__doc__)))
