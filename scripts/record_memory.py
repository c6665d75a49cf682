"""Record a trained sequence model at work: weighting heatmaps, the lecture's copy figure and the
memory contents over an episode as a video.

    python scripts/record_memory.py --checkpoint agents/pretrained/ntm-copy --length 20 --out-dir recordings/ntm-copy
    python scripts/record_memory.py --checkpoint agents/pretrained/ntm-repeat-copy --length 5 \
        --task-options min_repeats=3,max_repeats=3 --out-dir recordings/ntm-repeat-copy

Writes ``weightings.png`` (every attention entry, one panel per head), ``copy_figure.png``
(inputs, targets, outputs above; write and read weightings below) and ``memory.mp4`` (or .gif:
memory rows over time with the write (red) and read (green) weightings beside them). Works for
any core: without memory (LSTM) the video shows the hidden state instead, and without attention the
figure shows only inputs and outputs. With a video comes ``memory.png``, its still: the memory at
the last step beside the write and read weightings over time. Files of these names in ``--out-dir``
are replaced only when heed wrote them (or with ``--overwrite``); other files there are left alone.
``--task-options`` change the task's options over the checkpoint's (e.g. fix repeat copy's repeats).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import cli_main, require
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.trainers import sequence_utils as su
from heed.analysis import memory_figures as mf
from heed.analysis.video import write_video


@dataclass(frozen=True)
class Config:
    """Figures and a video of one episode of a trained sequence model."""

    checkpoint: Path
    """run dir, checkpoint dir or shipped weights (e.g. agents/pretrained/ntm-copy)"""
    out_dir: Path = Path("recordings/memory")
    """where the PNGs and the video go"""
    length: Annotated[int | None, Range(1, 10_000)] = None
    """task length of the episode (default: the task's own sampling)"""
    task_options: str = ""
    """task options over the checkpoint's, key=value or JSON (e.g. min_repeats=3,max_repeats=3)"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the episode"""
    video: Literal["mp4", "gif", "none"] = "mp4"
    """video format of the memory contents"""
    fps: Annotated[int, Range(1, 240)] = 4
    """video frames per second"""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


@torch.no_grad()
def record_episode(model: torch.nn.Module, inputs: torch.Tensor) -> dict[str, np.ndarray]:
    """Step a model ``[1, T, D]`` through an episode; return outputs, attention and memory per step.

    For a :class:`agents.sequence.RecurrentSequenceModel` the core is stepped by hand so the memory
    (or the hidden state) can be kept; other models are run whole (attention only).
    """
    core = getattr(model, "core", None)
    if core is None or not hasattr(core, "initial_state"):
        logits, attention, _ = model(inputs)
        rec = {"outputs": torch.sigmoid(logits[0]).numpy()}
        rec.update({f"att_{k}": v[0].numpy() for k, v in attention.items()})
        return rec
    state = core.initial_state(1)
    outs, memories, att = [], [], {}
    for t in range(inputs.shape[1]):
        out, state, attention = core(inputs[:, t], state)
        outs.append(model.readout(out)[0])
        mem = getattr(state, "memory", None)
        memories.append((mem[0] if mem is not None else out[0].view(-1, 1)).clone())
        for k, v in attention.items():
            att.setdefault(k, []).append(v[0])
    rec = {"outputs": torch.sigmoid(torch.stack(outs)).numpy(), "memory": torch.stack(memories).numpy()}
    rec.update({f"att_{k}": torch.stack(v).numpy() for k, v in att.items()})
    return rec


def main(cfg: Config) -> dict[str, str]:
    """Write the figures and the video into ``--out-dir``; return their paths."""
    validate(cfg)
    model, task, ckpt = su.load_sequence_model(str(cfg.checkpoint))
    if cfg.task_options:
        task = _override_task(task, ckpt.meta, su.parse_options(cfg.task_options, "task-options"))
    if cfg.length is not None:
        require(hasattr(task, "fixed_length"), f"task '{ckpt.meta['task']}' has no fixed length")
        task = task.fixed_length(cfg.length)
    batch = task.sample(1, np.random.default_rng(cfg.seed))
    inputs = torch.as_tensor(batch.inputs)
    out = OutputFolder(cfg.out_dir, cfg.overwrite)
    names = ["weightings.png", "copy_figure.png", "recording.json"]
    names += [f"memory.{cfg.video}", "memory.png"] if cfg.video != "none" else []
    files = {n: out.claim(n) for n in names}  # every refusal before any work
    with disk_errors(cfg.out_dir):
        return _record(cfg, model, task, ckpt, inputs, batch, files)


def _override_task(task, meta: dict, options: dict):
    """The checkpoint's task with ``options`` over its own; the model's input and output sizes must stay."""
    new = su.build_task(meta["task"], {**meta["task_options"], **options})
    require((new.input_size, new.output_size) == (task.input_size, task.output_size),
            f"--task-options change the task's sizes ({task.input_size} in, {task.output_size} out -> "
            f"{new.input_size} in, {new.output_size} out): the model cannot take them")
    return new


def _record(cfg: Config, model, task, ckpt, inputs: torch.Tensor, batch, files: dict[str, Path]) -> dict[str, str]:
    rec = record_episode(model, inputs)
    paths: dict[str, str] = {}
    name = f"{su.model_config_from_meta(ckpt.meta).name} on {ckpt.meta['task']}"
    heads = {}
    for key, value in rec.items():
        if key.startswith("att_") and value.ndim == 3 and key not in ("att_read_modes",):
            for h in range(value.shape[1]):
                heads[f"{key[4:]}_{h}"] = value[:, h]
    if heads:
        paths["weightings"] = str(mf.weighting_heatmaps(heads, files["weightings.png"], title=name))
    targets = batch.targets[0] if task.loss == "bits" else np.eye(task.output_size)[batch.targets[0]]
    outputs = rec["outputs"] * batch.mask[0][:, None]
    paths["copy_figure"] = str(
        mf.copy_figure(batch.inputs[0], outputs, targets, heads.get("write_0"), heads.get("read_0"),
                       files["copy_figure.png"], title=name)
    )
    if cfg.video != "none" and "memory" in rec:
        frames = mf.memory_frames(rec["memory"], heads.get("read_0"), heads.get("write_0"))
        paths["video"] = str(write_video(files[f"memory.{cfg.video}"], frames, fps=cfg.fps))
        paths["memory_still"] = str(mf.memory_still(rec["memory"], heads.get("write_0"), heads.get("read_0"),
                                                    files["memory.png"], title=name))
    record = {"checkpoint": str(cfg.checkpoint), "seed": cfg.seed, "length": cfg.length,
              "task_options": cfg.task_options, "steps": int(inputs.shape[1]), **paths}
    files["recording.json"].write_text(json.dumps(record, indent=2))
    for key, path in paths.items():
        print(f"{key}: {path}")
    return paths


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="record_memory.py", description=__doc__)))
