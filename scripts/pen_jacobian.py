"""The lecture's sequential-Jacobian figure of an online handwriting recogniser, and the dot count.

    heed pen-jacobian --text "once having" --char i --out-dir docs/figures/handwriting
    heed pen-jacobian --checkpoint runs/pen-lstm --count 200 --out-dir pen-lstm-jacobian

``--text`` is written by held-out writer ``--writer`` (:mod:`heed.envs.handwriting`); the recogniser
(``--checkpoint``: a ``heed train pen`` run, default the shipped BLSTM ``agents/pretrained/pen-blstm``)
reads it. The output unit of ``--char`` (its ``--occurrence``-th occurrence in the text) is explained
at the moment it fires: the **spike** is the step of highest probability of that class within the
run of steps where the best path emits it that lies closest in time to the character's own pen
points (if the class never wins a step: its most probable step overall). The magnitude of the
sequential Jacobian ``|d z_k^t / d x_s|`` (z: the output's logit, before the softmax, which would
saturate at a confident spike; the norm over the three inputs dx, dy, eos) against every input step s is
computed by :func:`heed.analysis.sequential.sequential_jacobian` and drawn three ways: colouring
the pen trajectory, as a series with the character's body and delayed dot marked, and above the
output probabilities (the spikes).

``--count N`` also measures, over N held-out words (held-out writers) that contain an i or j, in
how many the Jacobian of the first i/j's output has a **peak** both at the letter's body and at its
delayed dot (peak: the largest sensitivity over those points is above the 90th percentile of all
steps; :func:`heed.analysis.pen_figures.has_peak`). Writes ``jacobian.png`` and ``summary.json`` in
``--out-dir`` (files there are replaced only when heed wrote them, or with ``--overwrite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch import nn

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.validate import Range, SeedRange, validate
from heed.envs.handwriting import ALPHABET, TEST_WRITERS, PenSample, check_text, words, write, writer_style

SHIPPED = Path(__file__).resolve().parents[1] / "agents" / "pretrained" / "pen-blstm"


@dataclass(frozen=True)
class Config:
    """Explain one character's output of a pen recogniser with the sequential Jacobian."""

    checkpoint: Path = SHIPPED
    """a `heed train pen` run dir or checkpoint dir (default: the shipped BLSTM)"""
    text: str = "once having"
    """the text to write and read (lowercase a-z and spaces)"""
    char: str = "i"
    """the character whose output unit is explained"""
    occurrence: Annotated[int, Range(1, 200)] = 1
    """which occurrence of --char in --text (1: the first)"""
    writer: Annotated[int, Range(0, 10_000_000)] = 1000
    """the writer (ids 1000-1099 are held out from training)"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the sample's variation (and of the --count words)"""
    count: Annotated[int, Range(0, 10_000)] = 0
    """also count body-and-dot peaks over this many held-out words with an i or j (0: skip)"""
    out_dir: Path = Path("pen_jacobian")
    """where jacobian.png and summary.json go"""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads"""
    overwrite: bool = False
    """let the outputs replace files that heed did not write"""


def spike_time(probs: np.ndarray, k: int, own: np.ndarray) -> int:
    """The step where class ``k`` fires for the character whose points are ``own [T]`` (module docstring)."""
    wins = np.flatnonzero(probs.argmax(-1) == k)
    if len(wins) == 0:
        return int(np.argmax(probs[:, k]))
    runs = np.split(wins, np.flatnonzero(np.diff(wins) > 1) + 1)
    centre = float(np.flatnonzero(own).mean())
    closest = min(runs, key=lambda r: min(abs(r[0] - centre), abs(r[-1] - centre)))
    return int(closest[np.argmax(probs[closest, k])])


def explain(model: nn.Module, sample: PenSample, position: int) -> dict:
    """Output probabilities, spike and Jacobian magnitudes for the character at ``text[position]``."""
    from heed.analysis.sequential import sequential_jacobian

    k = ALPHABET.index(sample.text[position]) + 1
    x = torch.from_numpy(sample.points)[None]  # [1, T, 3]
    with torch.no_grad():
        probs = torch.softmax(model(x)[0][0], -1).numpy()  # [T, K]
    own = sample.char_index == position
    spike = spike_time(probs, k, own & ~sample.delayed)
    jac = sequential_jacobian(lambda v: model(v)[0], x, spike)[0, k]  # [T, 3]
    return {"probs": probs, "class": k, "spike": spike, "sensitivity": jac.norm(dim=-1).numpy(),
            "body": own & ~sample.delayed, "dot": own & sample.delayed}


def count_dot_peaks(model: nn.Module, count: int, seed: int) -> dict:
    """Over ``count`` held-out words with an i or j (held-out writers): how many peak at body and dot."""
    from heed.analysis.pen_figures import has_peak

    pool = [w for w in words("test") if "i" in w or "j" in w]
    rng = np.random.default_rng(seed)
    both = body_only = dot_only = read = 0
    for word in rng.choice(pool, size=count, replace=count > len(pool)):
        sample = write(str(word), writer_style(int(rng.integers(TEST_WRITERS.start, TEST_WRITERS.stop))), rng)
        position = min(i for i, c in enumerate(word) if c in "ij")
        e = explain(model, sample, position)
        at_body, at_dot = has_peak(e["sensitivity"], e["body"]), has_peak(e["sensitivity"], e["dot"])
        both += at_body and at_dot
        body_only += at_body and not at_dot
        dot_only += at_dot and not at_body
        read += int(e["probs"][e["spike"]].argmax() == e["class"])
    return {"words": count, "peak_body_and_dot": both, "peak_body_only": body_only, "peak_dot_only": dot_only,
            "spike_is_the_letter": read, "peak_rule": "max over the points > 90th percentile of all steps"}


def main(cfg: Config) -> dict:
    """Write the figure (and the count); returns the summary."""
    from heed.agents.common.safe_io import OutputFolder, disk_errors, write_json_atomic
    from heed.agents.trainers.pen import load_recogniser, recognise
    from heed.analysis.figures import save_figure
    from heed.analysis.pen_figures import has_peak, jacobian_figure

    validate(cfg)
    check_text(cfg.text)
    require(len(cfg.char) == 1 and cfg.char in ALPHABET[1:], f"--char must be one letter a-z, got '{cfg.char}'")
    positions = [i for i, c in enumerate(cfg.text) if c == cfg.char]
    require(len(positions) >= cfg.occurrence,
            f"--text '{cfg.text}' has {len(positions)} '{cfg.char}'; --occurrence {cfg.occurrence} asks for more")
    torch.set_num_threads(cfg.threads)
    if cfg.checkpoint == SHIPPED and not SHIPPED.exists():
        raise HeedError(f"the shipped recogniser is missing at '{SHIPPED}': pass --checkpoint RUN_DIR of `heed train pen`")
    model, meta = load_recogniser(str(cfg.checkpoint))
    folder = OutputFolder(cfg.out_dir, cfg.overwrite, "--out-dir")
    figure_path, summary_path = folder.claim("jacobian.png"), folder.claim("summary.json")
    sample = write(cfg.text, writer_style(cfg.writer), np.random.default_rng(cfg.seed))
    position = positions[cfg.occurrence - 1]
    e = explain(model, sample, position)
    read = recognise(model, [sample])[0]
    title = (f"'{cfg.text}' by writer {cfg.writer}, read as '{read}': |dz/dx| of the '{cfg.char}' output "
             f"at t = {e['spike']}")
    fig = jacobian_figure(sample.points, e["sensitivity"], e["probs"], ALPHABET, e["class"], e["spike"],
                          e["body"], e["dot"], title)
    with disk_errors(figure_path):
        save_figure(fig, figure_path, close=True)
    summary = {
        "checkpoint": str(cfg.checkpoint), "model": meta.get("model"), "text": cfg.text, "read": read,
        "char": cfg.char, "position": position, "writer": cfg.writer, "spike": e["spike"],
        "spike_probability": float(e["probs"][e["spike"], e["class"]]), "steps": len(sample.points),
        "peak_at_body": has_peak(e["sensitivity"], e["body"]), "peak_at_dot": has_peak(e["sensitivity"], e["dot"]),
        "figure": str(figure_path),
    }
    if cfg.count:
        summary["count"] = count_dot_peaks(model, cfg.count, cfg.seed)
    with disk_errors(summary_path):
        write_json_atomic(summary_path, summary)
    print(f"read '{read}'; '{cfg.char}' fires at step {e['spike']} (p = {summary['spike_probability']:.2f}); "
          f"peak at body: {summary['peak_at_body']}, at the delayed dot: {summary['peak_at_dot']}")
    if cfg.count:
        c = summary["count"]
        print(f"{c['peak_body_and_dot']} of {c['words']} held-out words with an i/j peak at body and dot "
              f"({c['peak_body_only']} body only, {c['peak_dot_only']} dot only)")
    print(f"wrote {figure_path} and {summary_path}")
    return summary


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="pen_jacobian.py", description=__doc__)))
