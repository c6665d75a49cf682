"""Validation bits per character of every model of one or more text sweeps against training CPU seconds,
as ONE figure (issue 18): ``heed bpc-curves SWEEP_DIR [SWEEP_DIR ...] --out FILE.png``.

    heed bpc-curves runs/h18a/sweep-text runs/h18a/sweep-text-act --out docs/figures/language/bpc_curves.png

Every configuration (a sweep's trials minus the seed, :func:`heed.scripts.aggregate.load_trials`) is one
line, the interquartile mean over its seeds, with its percentile-bootstrap confidence band, exactly as
``heed aggregate SWEEP --metrics eval/bits_per_step --x cpu_seconds`` draws one sweep (its
:func:`~heed.scripts.aggregate.align` and :func:`~heed.scripts.aggregate.plot`); this command only puts
several sweeps (say, three models at three seeds and ACT at one) on the same axes. A configuration with
one seed has a band of zero width. The legend names the model and its options, with the seed count.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, validate
from heed.analysis import runs, stats
from heed.scripts.aggregate import align, load_trials, plot


@dataclass(frozen=True)
class Config:
    """One figure of held-out bpc against training CPU seconds over several sweep folders."""

    sweep_dirs: tyro.conf.Positional[tuple[Path, ...]]
    """sweep folders written by heed sweep"""
    out: Path = Path("bpc_curves.png")
    """the PNG to write"""
    metric: str = "eval/bits_per_step"
    """the TensorBoard scalar tag to draw"""
    level: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.95
    """confidence level of the bootstrap bands"""
    resamples: Annotated[int, Range(1, 1_000_000)] = 2000
    """bootstrap resamples"""
    points: Annotated[int, Range(2, 100_000)] = 200
    """at most this many points per curve"""
    overwrite: bool = False
    """replace an existing file at --out that heed did not write"""


def label(group: str, seeds: int) -> str:
    """``model-lstm_model.hidden-size=200`` -> ``lstm hidden-size=200 (3 seeds)``."""
    words = [w.removeprefix("model.").removeprefix("model-") for w in group.split("_")]
    return f"{' '.join(words)} ({seeds} seed{'s' if seeds > 1 else ''})"


def main(cfg: Config) -> dict[str, dict[str, float]]:
    """Draw the figure; return per configuration its seeds, last CPU second and last IQM value."""
    validate(cfg)
    if not cfg.sweep_dirs:
        raise HeedError("give at least one sweep folder")
    out = claim_output_file(cfg.out, cfg.overwrite)
    bands, finals = {}, {}
    for sweep_dir in cfg.sweep_dirs:
        for group, seeds in load_trials(sweep_dir).items():
            scalars = [runs.read_scalars(d) for d in seeds.values()]
            missing = [str(d) for d, s in zip(seeds.values(), scalars) if cfg.metric not in s or runs.CPU_TAG not in s]
            if missing:
                raise HeedError(f"{missing[0]} logs no {cfg.metric} or {runs.CPU_TAG}")
            x, values = align([runs.to_cpu_seconds(s[cfg.metric], s[runs.CPU_TAG]) for s in scalars], cfg.points)
            low, high = stats.bootstrap_ci(values, stats.iqm, cfg.level, cfg.resamples)
            name = label(group, len(seeds))
            if name in bands:
                raise HeedError(f"configuration '{group}' is in two of the sweep folders")
            bands[name] = (x, stats.iqm(values), low, high)
            finals[name] = {"seeds": len(seeds), "cpu_seconds": float(x[-1]), "iqm": float(stats.iqm(values)[-1])}
    with disk_errors(out.parent):
        plot(cfg.metric, bands, "training CPU seconds (one thread)", cfg.level, out)
    for name, final in finals.items():
        print(f"{name}: {cfg.metric} {final['iqm']:.4f} (IQM) at {final['cpu_seconds']:.0f} CPU-s")
    print(f"wrote {out}")
    return finals


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, args=sys.argv[1:], prog="heed bpc-curves", description=__doc__)))
