"""Record where a trained glimpse model looks: a still PNG and a video of its glimpse paths.

    python scripts/record_glimpses.py --run-dir runs/glimpse/cluttered60-ram8 --count 4 --video gif
    python scripts/record_glimpses.py --run-dir "runs/h19/pairs/model=dram__seed=1" --out docs/figures/glimpse \
        --name pairs_path                       # two digits: the path visiting both (labels left to right)

Writes ``<out>/glimpse_path.png`` (``--name``) (every glimpse of each image, numbered, with its retina boxes or
DRAW read window) and ``<out>/glimpse_path.{gif,mp4}`` (one frame per glimpse, images side by side).
Images are held-out test canvases; RAM's path is one stochastic sample (``--seed``). Files of these
names in the output folder are replaced only when heed wrote them (or with ``--overwrite``).
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
from heed.analysis.glimpse_figures import glimpse_frames, path_figure
from heed.analysis.video import write_video


@dataclass(frozen=True)
class Config:
    """Glimpse paths of a trained glimpse model: a still and a video."""

    run_dir: str
    """A glimpse run folder (its latest checkpoint is used) or a checkpoint folder."""
    out: str | None = None
    """Output folder (default: <run_dir>/recordings)."""
    count: Annotated[int, Range(1, 64)] = 4
    """Number of test images to record."""
    seed: Annotated[int, SeedRange] = 0
    """Seed for choosing the test images and for RAM's stochastic glimpse path."""
    video: Literal["gif", "mp4"] = "gif"
    """Video format: gif or mp4."""
    fps: Annotated[float, Range(0.1, 240)] = 2.0
    """Video frames (glimpses) per second."""
    scale: Annotated[int, Range(1, 32)] = 4
    """Pixel upscaling of the video frames."""
    name: str = "glimpse_path"
    """File name (no extension) of the still and the video."""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


def main(cfg: Config) -> dict[str, Path]:
    """Write the still and the video; returns their paths."""
    from heed.agents.trainers.glimpse import make_model, retina, stored_config
    from heed.envs.mnist import dataset_spec, fixed_test_set, load_digits

    validate(cfg)
    if not cfg.name or Path(cfg.name).name != cfg.name or cfg.name.startswith("."):
        raise HeedError(f"--name '{cfg.name}' must be a plain file name without a folder")
    if cfg.video not in ("gif", "mp4"):  # the in-process API is not checked by the parser
        raise HeedError(f"unknown --video '{cfg.video}': use gif or mp4")
    torch.set_num_threads(1)
    ckpt = load_checkpoint(cfg.run_dir)
    if not ckpt.kind.startswith("glimpse-"):
        raise HeedError(f"'{cfg.run_dir}' holds a '{ckpt.kind}' checkpoint, not a glimpse model")
    train_cfg = stored_config(ckpt.config)
    if train_cfg.model == "cnn":
        raise HeedError("a CNN takes no glimpses: record a ram, random or soft run")
    out_dir = Path(cfg.out) if cfg.out else Path(ckpt.path).parents[1] / "recordings"
    if cfg.out is None and Path(ckpt.path).parent.name != "checkpoints":
        out_dir = Path(ckpt.path) / "recordings"
    folder = OutputFolder(out_dir, cfg.overwrite, "--out")
    still, video = folder.claim(f"{cfg.name}.png"), folder.claim(f"{cfg.name}.{cfg.video}")
    spec = dataset_spec(train_cfg.dataset)
    model = make_model(train_cfg, spec.size)
    load_module_state(model, ckpt.tensors, where=str(ckpt.path))
    model.eval()
    images, labels = fixed_test_set(spec, load_digits("test", train_cfg.source), n=cfg.count, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        out = model(torch.from_numpy(images))
    pred = out.logits.argmax(-1).numpy()
    locs = out.locations.numpy()
    if train_cfg.model == "soft":
        widths = out.extent.numpy()[:, :, None]  # [B, T, 1]: the N x N read window, N * delta pixels
    else:
        patch, scales = retina(train_cfg)
        widths = np.broadcast_to(
            np.array([patch * 2**s for s in range(scales)], float), (*locs.shape[:2], scales)
        )
    def said(v: np.ndarray) -> str:  # a label, or several (pairs: left to right) as "3 7"
        return " ".join(str(int(d)) for d in np.atleast_1d(v))

    titles = [f"{train_cfg.model}: label {said(y)}, says {said(p)}" for y, p in zip(labels, pred)]
    import matplotlib.pyplot as plt

    with disk_errors(out_dir):
        plt.close(path_figure(list(images), list(locs), list(widths), titles, still))
        per_image = [
            glimpse_frames(images[b], locs[b], widths[b], cfg.scale, f"{said(labels[b])}->{said(pred[b])}")
            for b in range(len(images))
        ]
        frames = [np.concatenate([f[t] for f in per_image], axis=1) for t in range(locs.shape[1])]
        video = write_video(video, frames, fps=cfg.fps)
    print(f"wrote {still} and {video}")
    return {"still": still, "video": video}


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="record_glimpses.py", description=__doc__)))
