"""Package a trained DQN run for shipping: fp16 weights, config, command, learning curve (CSV + PNG).

    python scripts/package_agent.py --run runs/pong --out agents/pretrained/pong

Takes the run's ``best/`` network (highest evaluation return) unless ``--which latest``. ``--out``
must be a new or empty folder, or one that this script wrote before (it is then replaced); anything
else is refused, so that packaging never deletes a folder it did not create.
"""

from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.validate import validate


@dataclass(frozen=True)
class Config:
    """Ship a dueling DQN run."""

    run: Path
    """The run folder (runs/pong)."""
    out: Path
    """Where the shipped agent goes (agents/pretrained/pong)."""
    which: Literal["best", "latest"] = "best"
    """The best evaluated network or the latest checkpoint."""
    command: str = ""
    """The exact training command, recorded beside the weights (default: rebuilt from config.json)."""
    overwrite: bool = False
    """Replace an agent already packaged in --out (only its packaged files; without it such a folder is refused)."""


#: what a packaged agent folder holds: the only files --out may already contain
SHIPPED_FILES = frozenset({"weights.safetensors", "meta.json", "config.json", "learning_curve.csv", "learning_curve.png"})


def check_out(run: Path, out: Path, overwrite: bool = False) -> None:
    """Refuse an ``--out`` that overlaps the run or holds anything but a previously packaged agent (that
    one only with ``--overwrite``)."""
    run_r, out_r = run.resolve(), out.resolve()
    if out_r == run_r or run_r in out_r.parents or out_r in run_r.parents:
        raise HeedError(f"refusing --out '{out}': it overlaps the run '{run}', which packaging would replace; "
                        "choose another folder")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise HeedError(f"refusing --out '{out}': it exists and is not a folder; choose a new folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in SHIPPED_FILES)
    if foreign:
        raise HeedError(f"refusing --out '{out}': it holds files this script did not write "
                        f"({', '.join(foreign[:3])}); choose a new or empty folder")
    if not overwrite and any(out.iterdir()):
        raise HeedError(f"refusing --out '{out}': it already holds a packaged agent (nothing was changed; "
                        "choose a new folder, or pass --overwrite to replace it)")


def read_curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of a TensorBoard run as ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def command_from_config(cfg: dict[str, Any]) -> str:
    """The ``train.py dqn`` command of a run's ``config.json`` (the run options are flat flags;
    an older flat config's ``torch_threads`` is today's ``--threads``)."""
    from heed.agents.trainers.dqn import migrate_config

    cfg = migrate_config(cfg)
    flat = {**{k: v for k, v in cfg.items() if k != "run"}, **(cfg.get("run") or {})}
    parts = ["python scripts/train.py dqn"]
    for key, value in flat.items():
        if key in {"resume", "progress"} or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def main(cfg: Config) -> Path:
    from heed.agents.common.checkpoint import latest_checkpoint, write_json_atomic
    from heed.agents.common.safe_io import disk_errors, read_json_object
    from heed.agents.dqn import load_q_network, save_q_network

    validate(cfg)
    check_out(cfg.run, cfg.out, cfg.overwrite)
    source = cfg.run / "best" if cfg.which == "best" else latest_checkpoint(cfg.run)
    if source is None or not (source / "weights.safetensors").exists():
        raise HeedError(f"no {cfg.which} network in '{cfg.run}'")
    net, meta = load_q_network(source)
    if not (cfg.run / "config.json").is_file():
        raise HeedError(f"'{cfg.run}' has no config.json: is it a heed dqn run?")
    train_cfg = read_json_object(cfg.run / "config.json", "config file", root=cfg.run)
    curves = read_curves(cfg.run)
    counters = meta.get("counters", {})
    save_q_network(cfg.out, net, meta["config"]["env_id"], dtype=torch.float16, extra={
        "counters": counters,
        "train_config": train_cfg,
        "command": cfg.command or command_from_config(train_cfg),
    })
    with disk_errors(cfg.out / "learning_curve.csv"), open(cfg.out / "learning_curve.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tag", "step", "value"])
        for tag in ("eval/return", "charts/episodic_return"):
            for step, value in curves.get(tag, []):
                writer.writerow([tag, step, f"{value:.3f}"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = curves.get("charts/episodic_return", [])
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], ".", alpha=0.3, ms=3, label="training games (ε-greedy)")
    ev = curves.get("eval/return", [])
    if ev:
        ax.plot([s for s, _ in ev], [v for _, v in ev], "o-", label="evaluation (ε = 0.01, mean of games)")
    ax.set_xlabel("agent steps (×4 frames)")
    ax.set_ylabel("game score")
    ax.set_title(f"heed Dueling Double DQN on {meta['config']['env_id']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with disk_errors(cfg.out):
        fig.savefig(cfg.out / "learning_curve.png", dpi=120)
        write_json_atomic(cfg.out / "config.json", train_cfg)
    print(f"shipped {source} -> {cfg.out} (step {counters.get('global_step')}, eval {counters.get('eval_return')})")
    return cfg.out


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="package_agent.py", description=__doc__)))
