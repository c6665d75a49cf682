"""Copy length generalisation, NTM against LSTM: the NTM paper's figure and a bit-error table.

    python scripts/copy_generalisation.py --out-dir docs/figures/memory

Both models were trained on copy lengths 1-20 (defaults: the bundled ``agents/pretrained/ntm-copy``
and ``agents/pretrained/lstm-copy``). For each length (default 10, 20, 30, 50, 120) the figure
``copy_generalisation.png`` shows the targets, the NTM's outputs and the LSTM's outputs of one
sequence's answer phase, as Graves et al. (2014) Figs. 4 and 5: time left to right, the 8 bits top
to bottom, each column as wide as its length. The table (bits and bit errors per sequence, bit-error
rate; ``--sequences`` per length, the sequences of ``evaluate_memory.py`` with the same ``--seed``)
is printed as markdown and written to ``copy_generalisation.json``. Files of these names in
``--out-dir`` are replaced only when heed wrote them (or with ``--overwrite``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import cli_main, require
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.trainers import sequence_utils as su
from heed.analysis import memory_figures as mf
from heed.scripts import evaluate_memory

#: the output files, in --out-dir
FIGURE, TABLE = "copy_generalisation.png", "copy_generalisation.json"


@dataclass(frozen=True)
class Config:
    """NTM against LSTM on copy sequences longer than the training ones: figure and table."""

    ntm: Path | None = None
    """the NTM (run dir, checkpoint dir or shipped weights) trained on copy (default: the bundled ntm-copy)"""
    lstm: Path | None = None
    """the LSTM, trained on the same task (default: the bundled lstm-copy)"""
    lengths: Annotated[tuple[int, ...], Range(1, 1000)] = field(default_factory=lambda: (10, 20, 30, 50, 120))
    """copy lengths (figure columns and table rows)"""
    sequences: Annotated[int, Range(1, evaluate_memory.MAX_SEQUENCES)] = 256
    """test sequences per length for the table"""
    seed: Annotated[int, SeedRange] = 12345
    """seed of the table's sequences (length n uses seed + n, as evaluate_memory.py)"""
    figure_seed: Annotated[int, SeedRange] = 0
    """seed of the one drawn sequence per length (length n uses figure_seed + n)"""
    out_dir: Path = Path("docs/figures/memory")
    """where the PNG and the JSON go"""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads"""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


def bundled(name: str) -> Path:
    """``agents/pretrained/NAME`` inside the installed package."""
    import heed.agents

    return Path(heed.agents.__file__).resolve().parent / "pretrained" / name


@torch.no_grad()
def answer_phase(model: torch.nn.Module, task, length: int, seed: int) -> dict[str, np.ndarray]:
    """One sequence of ``task`` at ``length``: its targets and the model's output probabilities
    on the scored (answer) steps, each ``[L_answer, K]``."""
    batch = task.fixed_length(length).sample(1, np.random.default_rng(seed))
    scored = batch.mask[0] > 0
    probs = torch.sigmoid(model(torch.as_tensor(batch.inputs))[0])[0].numpy()  # [T, K]
    return {"targets": batch.targets[0][scored], "outputs": probs[scored]}


def markdown_table(rows: dict[str, list[dict]]) -> str:
    """``{model: evaluate_memory rows}`` as one markdown table, a row per length."""
    names = list(rows)
    head = "| length | " + " | ".join(f"{n} bits / seq | {n} bit errors / seq | {n} bit-error rate" for n in names) + " |"
    lines = [head, "|" + "-|" * (1 + 3 * len(names))]
    for i, row in enumerate(rows[names[0]]):
        cells = []
        for n in names:
            r = rows[n][i]
            cells += [f"{r['bits_per_sequence']:.3f}", f"{r['bit_errors_per_sequence']:.3f}", f"{r['bit_error_rate']:.2%}"]
        lines.append(f"| {row['length']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(cfg: Config) -> dict[str, str]:
    """Write the figure and the table into ``--out-dir``; return their paths."""
    validate(cfg)
    require(len(cfg.lengths) > 0, "--lengths needs at least one length")
    require(len(set(cfg.lengths)) == len(cfg.lengths), f"--lengths has a repeated length: {list(cfg.lengths)}")
    torch.set_num_threads(cfg.threads)
    models = {}
    paths = {"NTM": cfg.ntm or bundled("ntm-copy"), "LSTM": cfg.lstm or bundled("lstm-copy")}
    for name, path in paths.items():
        model, task, ckpt = su.load_sequence_model(str(path))
        require(ckpt.meta["task"] == "copy", f"--{name.lower()} '{path}' was trained on '{ckpt.meta['task']}', not copy")
        models[name] = (model, task, path)
    out = OutputFolder(cfg.out_dir, cfg.overwrite)
    files = {n: out.claim(n) for n in (FIGURE, TABLE)}  # every refusal before any work
    rows = {}
    for name, (_, _, path) in models.items():
        print(f"{name} ({path}):")
        rows[name] = evaluate_memory.main(evaluate_memory.Config(
            checkpoint=path, lengths=cfg.lengths, sequences=cfg.sequences, seed=cfg.seed, threads=cfg.threads))
    panels: dict[int, dict[str, np.ndarray]] = {}
    for length in cfg.lengths:
        for name, (model, task, _) in models.items():
            phase = answer_phase(model, task, length, cfg.figure_seed + length)
            panels.setdefault(length, {"targets": phase["targets"]})[f"{name} outputs"] = phase["outputs"]
    table = markdown_table(rows)
    print(table)
    with disk_errors(cfg.out_dir):
        mf.generalisation_figure(panels, files[FIGURE], title="copy, trained on lengths 1-20: NTM against LSTM")
        record = {"ntm": str(cfg.ntm or "ntm-copy (bundled)"), "lstm": str(cfg.lstm or "lstm-copy (bundled)"),
                  "sequences": cfg.sequences, "seed": cfg.seed,
                  "figure_seed": cfg.figure_seed, "rows": rows}
        files[TABLE].write_text(json.dumps(record, indent=2))
    written = {"figure": str(files[FIGURE]), "table": str(files[TABLE])}
    for key, path in written.items():
        print(f"{key}: {path}")
    return written


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="copy_generalisation.py", description=__doc__)))
