"""Print a Markdown table of finished runs: the numbers that go into RESULTS.md, read from the runs.

    python scripts/summarize_runs.py runs/mem/*          # supervised runs (metrics.jsonl)
    python scripts/summarize_runs.py runs/glimpse2/*     # glimpse runs (results.json)
    python scripts/summarize_runs.py runs/pong runs/ppo* # DQN and PPO runs (TensorBoard events)

A supervised run gives one row: its task and model (from ``config.json``), the last evaluation
(sequences, updates, training CPU-s, held-out metric) and the best evaluation seen, so a loss spike
at the end is visible next to the best value. A glimpse run gives its ``results.json``. A DQN or
PPO run (neither file) gives the last and best value of each held-out or episodic scalar in its
TensorBoard events (``eval/*``, ``charts/episodic_return``, ``rollout/*``). Paths that are not run
folders (logs, ``DONE`` markers) are skipped, and each skipped path is named on stderr. Every file is
read with heed's safe reader: a damaged or crafted run folder is one line, never a hang.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.safe_io import read_bytes_capped, read_json_object
from heed.analysis import runs as run_events

#: the largest metrics.jsonl read (a million evaluations of a few hundred bytes each)
MAX_METRICS_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """One Markdown table over run folders (supervised, glimpse, DQN, PPO)."""

    runs: tyro.conf.Positional[tuple[Path, ...]]
    """run folders (paths that are not run folders are skipped and named on stderr)"""


def read_metrics(path: Path, root: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (a partial last line, left by a killed run, is dropped)."""
    text = read_bytes_capped(path, MAX_METRICS_BYTES, "metrics file", root=root).decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if i == len(lines) - 1:
                break
            raise HeedError(f"{path} line {i + 1} is not JSON") from None
        if not isinstance(row, dict):
            raise HeedError(f"{path} line {i + 1} is not a JSON object")
        rows.append(row)
    return rows


def _metric_key(row: dict) -> str:
    for key in ("eval_bits_per_sequence", "eval_error_rate"):
        if key in row:
            return key
    return next(k for k in row if k.startswith("eval_"))


def supervised_row(run: Path) -> dict:
    """One supervised run: config, last and best evaluation (``metrics.jsonl`` rows)."""
    cfg = read_json_object(run / "config.json", "run config", root=run)
    rows = read_metrics(run / "metrics.jsonl", run)
    require(rows, f"{run}/metrics.jsonl has no evaluations yet")
    try:
        return _supervised_row(run, cfg, rows)
    except (KeyError, TypeError, ValueError, StopIteration):
        raise HeedError(f"{run}: config.json or metrics.jsonl lacks the fields a supervised run writes") from None


def _supervised_row(run: Path, cfg: dict[str, Any], rows: list[dict[str, Any]]) -> dict:
    key = _metric_key(rows[-1])
    rows = [r for r in rows if isinstance(r.get(key), (int, float))]
    require(rows, f"{run}/metrics.jsonl has no numeric {key}")
    best = min(rows, key=lambda r: r[key])
    last = rows[-1]
    return {
        "run": run.name,
        "task": cfg["task"] + (f" ({cfg['task_options']})" if cfg.get("task_options") else ""),
        "model": cfg["model"]["name"] if "model" in cfg else cfg["core"],
        "metric": key.removeprefix("eval_"),
        "sequences": last["sequences"],
        "updates": last["updates"],
        "cpu_s": last["cpu_seconds"],
        "last": last[key],
        "best": best[key],
        "best_at_cpu_s": best["cpu_seconds"],
        "bit_error_rate_last": last.get("eval_bit_error_rate"),
        "optimum": last.get("eval_optimal_bits_per_sequence"),
    }


def glimpse_row(run: Path) -> dict:
    """One glimpse run: its ``results.json``."""
    res = read_json_object(run / "results.json", "glimpse results", root=run)
    return {"run": run.name, **res}


def events_row(run: Path) -> dict:
    """A run with only TensorBoard events (DQN, PPO): last and best of each held-out/episodic scalar."""
    cfg = read_json_object(run / "config.json", "run config", root=run) if (run / "config.json").exists() else {}
    scalars = run_events.read_scalars(run)
    tags = run_events.select(scalars, run_events.DEFAULT_METRICS)
    require(tags, f"{run} logs none of {', '.join(run_events.DEFAULT_METRICS)} yet")
    model = cfg.get("model", cfg.get("core"))
    row: dict = {"run": run.name, "env": cfg.get("env"), "model": model.get("name") if isinstance(model, dict) else model,
                 "steps": int(max(scalars[t].steps[-1] for t in tags))}
    for tag in tags:
        values = scalars[tag].values
        row[f"{tag} last"] = float(values[-1])
        row[f"{tag} best"] = float(values.min() if run_events.lower_is_better(tag) else values.max())
    return row


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict]) -> str:
    """Rows (dicts with the same keys) as a Markdown table (floats to 4 significant digits)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(cfg: Config) -> str:
    """Summarise run folders (supervised: metrics.jsonl + config.json; glimpse: results.json; DQN, PPO: events);
    print the tables and return them."""
    sup, gl, ev = [], [], []
    for run in map(Path, cfg.runs):
        if (run / "results.json").exists():
            gl.append(glimpse_row(run))
        elif (run / "metrics.jsonl").exists() and (run / "config.json").exists():
            sup.append(supervised_row(run))
        elif run.is_dir() and run_events.has_events(run):
            ev.append(events_row(run))
        else:
            print(f"skipped {run}: not a run folder", file=sys.stderr)
    require(sup or gl or ev, "none of the paths is a run folder (metrics.jsonl, results.json or TensorBoard events)")
    tables = "\n\n".join(markdown(t) for t in (sup, gl, ev) if t)
    print(tables)
    return tables


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="summarize_runs.py", description=__doc__)))
