"""Print a Markdown table of finished runs: the numbers that go into RESULTS.md, read from the runs.

    python scripts/summarize_runs.py runs/mem/*          # supervised runs (metrics.jsonl)
    python scripts/summarize_runs.py runs/glimpse2/*     # glimpse runs (results.json)
    python scripts/summarize_runs.py runs/pong runs/ppo* # DQN and PPO runs (TensorBoard events)

A supervised run gives one row: its task and model (from ``config.json``), the last evaluation
(sequences, updates, training CPU-s, held-out metric) and the best evaluation seen, so a loss spike
at the end is visible next to the best value. A glimpse run gives its ``results.json``. A DQN or
PPO run (neither file) gives the last and best value of each held-out or episodic scalar in its
TensorBoard events (``eval/*``, ``charts/episodic_return``, ``rollout/*``). Paths that are not run
folders (logs, ``DONE`` markers) are skipped, and each skipped path is named on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tyro

from heed.agents.common.errors import cli_main, require
from heed.analysis import runs as run_events


def _metric_key(row: dict) -> str:
    for key in ("eval_bits_per_sequence", "eval_error_rate"):
        if key in row:
            return key
    return next(k for k in row if k.startswith("eval_"))


def supervised_row(run: Path) -> dict:
    """One supervised run: config, last and best evaluation (``metrics.jsonl`` rows)."""
    cfg = json.loads((run / "config.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    require(rows, f"{run}/metrics.jsonl has no evaluations yet")
    key = _metric_key(rows[-1])
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
    res = json.loads((run / "results.json").read_text())
    return {"run": run.name, **res}


def events_row(run: Path) -> dict:
    """A run with only TensorBoard events (DQN, PPO): last and best of each held-out/episodic scalar."""
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
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


def main(runs: list[Path], /) -> None:
    """Summarise run folders (supervised: metrics.jsonl + config.json; glimpse: results.json; DQN, PPO: events)."""
    sup, gl, ev = [], [], []
    for run in runs:
        if (run / "results.json").exists():
            gl.append(glimpse_row(run))
        elif (run / "metrics.jsonl").exists() and (run / "config.json").exists():
            sup.append(supervised_row(run))
        elif run.is_dir() and run_events.has_events(run):
            ev.append(events_row(run))
        else:
            print(f"skipped {run}: not a run folder", file=sys.stderr)
    require(sup or gl or ev, "none of the paths is a run folder (metrics.jsonl, results.json or TensorBoard events)")
    print("\n\n".join(markdown(t) for t in (sup, gl, ev) if t))


if __name__ == "__main__":
    cli_main(lambda: tyro.cli(main, args=sys.argv[1:]))
