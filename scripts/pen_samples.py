"""A figure of synthetic online handwriting: one text written by training and by held-out writers.

    heed pen-samples --out docs/figures/handwriting/samples.png

Each row is :func:`heed.envs.handwriting.write` of ``--text`` by one writer (its id and split on the
left); delayed strokes (i/j dots, t-bars, x-crosses) are drawn like the rest, but written last.
An existing ``--out`` file is replaced only when heed wrote it (or with ``--overwrite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import cli_main, require
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.envs.handwriting import TEST_WRITERS, TRAIN_WRITERS, check_text, write, writer_style


@dataclass(frozen=True)
class Config:
    """Write one text in several hands and draw them."""

    out: Path = Path("pen_samples.png")
    """where to write the figure (PNG)"""
    text: str = "once having jumped the quiz"
    """the text (lowercase a-z and spaces)"""
    train_writers: Annotated[tuple[int, ...], Range(0, 999)] = (0, 1, 2, 3)
    """writer ids from the training range"""
    test_writers: Annotated[tuple[int, ...], Range(0, 10_000_000)] = (1000, 1001, 1002, 1003)
    """writer ids from the held-out range"""
    seed: Annotated[int, SeedRange] = 0
    """seed of each sample's variation (the same for every writer)"""
    overwrite: bool = False
    """let --out replace an existing file that heed did not write"""


def main(cfg: Config) -> Path:
    """Write the figure; returns its path."""
    from heed.analysis.figures import save_figure
    from heed.analysis.pen_figures import samples_figure

    validate(cfg)
    check_text(cfg.text)
    require(cfg.out.suffix.lower() == ".png", f"--out must end in .png, got '{cfg.out}'")
    for writer in cfg.train_writers:
        require(writer in TRAIN_WRITERS, f"--train-writers: {writer} is not in {TRAIN_WRITERS}")
    for writer in cfg.test_writers:
        require(writer in TEST_WRITERS, f"--test-writers: {writer} is not a held-out writer ({TEST_WRITERS})")
    out = claim_output_file(cfg.out, cfg.overwrite, "--out")
    rows = [(f"{split} writer {w}", write(cfg.text, writer_style(w), np.random.default_rng(cfg.seed)).points)
            for split, group in (("train", cfg.train_writers), ("held-out", cfg.test_writers)) for w in group]
    fig = samples_figure(rows, f"synthetic online handwriting: '{cfg.text}'")
    with disk_errors(out):
        save_figure(fig, out, close=True)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="pen_samples.py", description=__doc__)))
