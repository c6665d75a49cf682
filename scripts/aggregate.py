"""Pool a sweep's seeds: ``heed aggregate SWEEP_DIR`` writes IQM and mean with 95 % CIs, curves and a table.

    heed aggregate sweeps/copy                           # every held-out metric, curves over steps
    heed aggregate sweeps/copy --metrics eval/bits_per_sequence --x cpu_seconds

For every configuration of the sweep (its trials minus the seed) and every metric (a TensorBoard
scalar tag; default: the held-out and episodic numbers of every trainer, see
``heed.analysis.runs.DEFAULT_METRICS``), the final values of the seeds give the interquartile mean
and the mean, each with a percentile-bootstrap confidence interval (``heed.analysis.stats``).
Written to ``SWEEP_DIR/aggregate/``: ``table.md`` (ready for RESULTS.md, also printed),
``summary.json``, one PNG per metric with an IQM line and CI band per configuration, and
``tensorboard/CONFIG/`` with the same curves (``TAG/iqm``, ``TAG/ci_low``, ``TAG/ci_high``; one event
file per configuration, which a re-run replaces). Files of these names there are replaced only when
heed wrote them (or with ``--overwrite``).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.run import output_event_writer
from heed.agents.common.safe_io import (
    OutputFolder,
    check_file_name,
    disk_errors,
    read_json_object,
    write_json_atomic,
)
from heed.agents.common.validate import Range, validate
from heed.analysis import runs, stats


@dataclass(frozen=True)
class Config:
    """Aggregate the finished trials of a sweep folder (written by ``heed sweep``)."""

    sweep_dir: tyro.conf.Positional[Path]
    """the sweep folder"""
    metrics: tuple[str, ...] = runs.DEFAULT_METRICS
    """TensorBoard scalar tags to aggregate (shell patterns; '*' for every tag)"""
    x: Literal["step", "cpu_seconds"] = "step"
    """x axis of the curves: the trainer's step counter, or training CPU seconds (where charts/cpu_seconds is logged)"""
    value: Literal["last", "min", "max"] = "last"
    """a trial's value: its last logged one, or its lowest / highest over training (say, the best held-out
    error, where a run's final evaluation can catch a passing loss spike)"""
    level: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.95
    """confidence level of the bootstrap intervals"""
    resamples: Annotated[int, Range(1, 1_000_000)] = 2000
    """bootstrap resamples"""
    points: Annotated[int, Range(2, 100_000)] = 200
    """at most this many points per curve"""
    out_dir: Path | None = None
    """where the table, JSON, PNGs and TensorBoard curves go (default SWEEP_DIR/aggregate)"""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


def load_trials(sweep_dir: Path) -> dict[str, dict[int, Path]]:
    """The finished trials of a sweep: configuration (group) -> seed -> trial folder."""
    require(sweep_dir.is_dir(), f"no sweep folder at '{sweep_dir}'")
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    for record_path in sorted((sweep_dir / "trials").glob("*.json")):  # the sweep's records (heed.agents.sweep)
        record = read_json_object(record_path, "trial record", root=sweep_dir / "trials")
        if record.get("status") != "done":
            continue
        group, seed = record.get("group"), record.get("seed")
        if not isinstance(group, str) or not isinstance(seed, int) or isinstance(seed, bool):
            raise HeedError(f"trial record '{record_path}' has no group name or integer seed")
        check_file_name(group, f"the group of trial record '{record_path}'")
        groups[group][seed] = sweep_dir / record_path.stem
    require(groups, f"'{sweep_dir}' holds no finished trial (trials/NAME.json saying done); run heed sweep first")
    return dict(sorted(groups.items()))


def align(curves: list[runs.Curve], points: int) -> tuple[np.ndarray, np.ndarray]:
    """Put the seeds' curves on one x grid: ``x`` ``[P]`` and values ``[n_seeds, P]``.

    Curves logged at the same steps are stacked as they are; otherwise each is linearly
    interpolated on the union of their x values inside the range that every seed covers.
    """
    if all(np.array_equal(c.steps, curves[0].steps) for c in curves):
        x = curves[0].steps
    else:
        low, high = max(c.steps[0] for c in curves), min(c.steps[-1] for c in curves)
        x = np.unique(np.concatenate([c.steps for c in curves]))
        x = x[(x >= low) & (x <= high)]
    if len(x) > points:
        x = x[np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))]
    return x, np.stack([np.interp(x, c.steps, c.values) for c in curves])


#: a trial's one value per metric, from its whole curve (``Config.value``)
_TRIAL_VALUE = {"last": lambda c: c.last, "min": lambda c: float(np.min(c.values)),
                "max": lambda c: float(np.max(c.values))}


def _ci(row: dict[str, float], name: str) -> str:
    return f"{row[name]:.4g} [{row[name + '_low']:.4g}, {row[name + '_high']:.4g}]"


def markdown(rows: list[dict], level: float, value: str = "last") -> str:
    """The summary rows as one Markdown table (metric, configuration, seeds, IQM and mean with CIs)."""
    pct = f"{100 * level:g} %"
    metric = "metric" if value == "last" else f"metric ({value} over training)"
    lines = [f"| {metric} | configuration | seeds | IQM [{pct} CI] | mean [{pct} CI] | final step |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['group']} | {int(r['n'])} | {_ci(r, 'iqm')} | {_ci(r, 'mean')} | {r['step']:.6g} |"
              for r in rows]
    return "\n".join(lines)


def plot(metric: str, bands: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], x_label: str,
         level: float, path: Path) -> None:
    """One PNG: per configuration the IQM over seeds as a line and its CI as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for group, (x, centre, low, high) in bands.items():
        (line,) = ax.plot(x, centre, label=group)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set(xlabel=x_label, ylabel=metric, title=f"{metric}: IQM over seeds, {100 * level:g} % bootstrap CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(cfg: Config) -> list[dict]:
    """Aggregate; write the outputs; return the summary rows."""
    validate(cfg)
    groups = load_trials(cfg.sweep_dir)
    out = cfg.out_dir or cfg.sweep_dir / "aggregate"
    scalars = {g: {seed: runs.read_scalars(d) for seed, d in seeds.items()} for g, seeds in groups.items()}
    all_tags = {tag for seeds in scalars.values() for s in seeds.values() for tag in s}
    metrics = runs.select(all_tags, cfg.metrics)
    require(metrics, f"no scalar tag matches {', '.join(cfg.metrics)}; the trials log: {', '.join(sorted(all_tags)[:12])}")
    folder = OutputFolder(out, cfg.overwrite)
    table_md, summary_json = folder.claim("table.md"), folder.claim("summary.json")
    pngs = {metric: folder.claim(f"{metric.replace('/', '_')}.png", "a metric tag") for metric in metrics}
    with disk_errors(out):
        rows, figures = _aggregate(cfg, groups, scalars, metrics, out, pngs)
        table = markdown(rows, cfg.level, cfg.value)
        table_md.write_text(table + "\n")
        write_json_atomic(summary_json, {"level": cfg.level, "resamples": cfg.resamples, "value": cfg.value, "rows": rows,
                                         "figures": {k: str(v) for k, v in figures.items()}})
    print(table)
    print(f"\nwrote {table_md}, summary.json, {len(figures)} PNG(s) and TensorBoard curves "
          f"(tensorboard --logdir {out / 'tensorboard'})")
    return rows


def _aggregate(cfg: Config, groups: dict[str, dict[int, Path]], scalars: dict, metrics: list[str], out: Path,
               pngs: dict[str, Path]) -> tuple[list[dict], dict[str, Path]]:
    """The summary rows, and the PNG written per metric (with the TensorBoard curves beside them)."""
    rows, figures = [], {}
    curves_by_group: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)
    for metric in metrics:
        bands = {}
        for group, seeds in scalars.items():
            curves = [s[metric] for s in seeds.values() if metric in s]
            if len(curves) < len(seeds):  # a metric every seed of this configuration logs
                continue
            finals = np.array([_TRIAL_VALUE[cfg.value](c) for c in curves])
            rows.append({"metric": metric, "group": group, **stats.summarize(finals, cfg.level, cfg.resamples),
                         "step": float(min(c.steps[-1] for c in curves)), "seeds": sorted(seeds),
                         "values": finals.tolist()})
            x, values = align(curves, cfg.points)
            low, high = stats.bootstrap_ci(values, stats.iqm, cfg.level, cfg.resamples)
            curves_by_group[group].append((metric, x, stats.iqm(values), low, high))
            if cfg.x == "cpu_seconds":
                missing = [str(d) for d, s in zip(groups[group].values(), seeds.values()) if runs.CPU_TAG not in s]
                if missing:
                    raise HeedError(f"--x cpu_seconds: {missing[0]} logs no {runs.CPU_TAG}; use --x step")
                cpu = [runs.to_cpu_seconds(s[metric], s[runs.CPU_TAG]) for s in seeds.values()]
                x, values = align(cpu, cfg.points)
                low, high = stats.bootstrap_ci(values, stats.iqm, cfg.level, cfg.resamples)
            bands[group] = (x, stats.iqm(values), low, high)
        if bands:
            figures[metric] = pngs[metric]
            plot(metric, bands, "training CPU seconds" if cfg.x == "cpu_seconds" else "step", cfg.level, figures[metric])
    for group, curves in curves_by_group.items():  # one event file per configuration, replaced by a re-run
        with output_event_writer(out / "tensorboard" / group, "--out-dir") as writer:
            for metric, x, centre, low, high in curves:
                for i, step in enumerate(x):
                    for name, v in (("iqm", centre[i]), ("ci_low", low[i]), ("ci_high", high[i])):
                        writer.add_scalar(f"{metric}/{name}", float(v), int(step))
    return rows, figures


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, args=sys.argv[1:], prog="heed aggregate", description=__doc__)))
