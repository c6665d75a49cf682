"""Draw the sequential Jacobian (Graves) of a recurrent model: what its outputs remember.

Examples::

    python scripts/sequential_jacobian.py                       # an LSTM trained in seconds on cue recall
    python scripts/sequential_jacobian.py --checkpoint runs/copy-lstm --out copy_jacobian.png
    python scripts/sequential_jacobian.py --checkpoint agents/pretrained/ntm-copy --length 20 \
        --out docs/figures/memory/ntm_copy_jacobian.png

Without ``--checkpoint`` it trains :class:`CueLSTM` (below) on the cue-recall task of
:mod:`heed.envs.cue` (the answer is the input at step 0, so input time 0 must light up). With one, it loads a ``scripts/train.py supervised``
checkpoint and explains the model's logits on one sequence of its task. The figure (PNG) shows the
``[T_out, T_in]`` sensitivity matrix and the per-dimension Jacobian of one output step; with
``--tensorboard DIR`` it is also logged as an image. For a copy or repeat-copy model it also measures
the lag diagonal: the mean share of each answer step's sensitivity on the input step it copies
(:func:`heed.analysis.memory_figures.copy_source_share`; 1 = a clean diagonal). An existing ``--out`` file is replaced only when
heed wrote it (or with ``--overwrite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NamedTuple

import numpy as np
import torch
from torch import nn

from heed.agents.common.validate import Range, SeedRange
from heed.envs.cue import CueRecallTask


@dataclass(frozen=True)
class Config:
    """The sequential Jacobian figure of a trained (or a freshly trained demo) recurrent model."""

    checkpoint: Path | None = None
    """a supervised sequence-model checkpoint (run dir or checkpoint dir); none: train the cue-recall LSTM"""
    out: Path = Path("sequential_jacobian.png")
    """where to write the figure (PNG)"""
    length: Annotated[int | None, Range(1, 10_000)] = None
    """checkpoint: task length of the explained sequence (default: the task's own sampling)"""
    output_time: Annotated[int, Range(-100_000, 100_000)] = -1
    """the output step whose Jacobian is drawn per input dimension (negative: from the end)"""
    steps: Annotated[int, Range(2, 10_000)] = 24
    """demo model: sequence length T"""
    hidden: Annotated[int, Range(1, 4096)] = 32
    """demo model: LSTM hidden size"""
    updates: Annotated[int, Range(0, 1_000_000)] = 300
    """demo model: Adam updates (batch 64); about 300 solve the task"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the demo training and of the explained sequence"""
    device: str = "cpu"
    """auto, cpu or cuda"""
    tensorboard: Path | None = None
    """also log the figure to a TensorBoard run in this directory"""
    threads: Annotated[int, Range(0, 1024)] = 0
    """torch CPU threads (0: leave torch's default)"""
    progress: bool = True
    """show progress bars"""
    overwrite: bool = False
    """let --out replace an existing file that heed did not write"""


# ------------------------------------------------------------------ the demo model: an LSTM on cue recall


class CueBatch(NamedTuple):
    inputs: torch.Tensor  # [B, T, n_cues + 1] float32
    cues: torch.Tensor  # [B, n_cues] float32: the values of step 0, the answer at every step


def cue_batch(batch_size: int, steps: int, n_cues: int, rng: np.random.Generator) -> CueBatch:
    """A batch of :class:`heed.envs.cue.CueRecallTask` as tensors (numpy -> torch here, at the boundary)."""
    batch = CueRecallTask(steps=steps, n_cues=n_cues).sample(batch_size, rng)
    return CueBatch(torch.from_numpy(batch.inputs), torch.from_numpy(batch.targets[:, 0].copy()))


def input_labels(n_cues: int) -> list[str]:
    """Names of the input channels, for figures."""
    return CueRecallTask(n_cues=n_cues).input_labels()


class CueLSTM(nn.Module):
    """``nn.LSTM`` (batch first) and a linear readout: ``[B, T, D] -> [B, T, n_cues]``."""

    def __init__(self, input_size: int, n_cues: int, hidden: int = 32) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, n_cues)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.lstm(x)[0])


def train_cue_lstm(
    steps: int = 24,
    n_cues: int = 2,
    hidden: int = 32,
    updates: int = 300,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    progress: bool = False,
) -> tuple[CueLSTM, dict[str, float]]:
    """Train a :class:`CueLSTM` with Adam on the mean squared error at every step.

    Returns the model (eval mode) and ``{"mse", "mse_last_step", "baseline_mse"}`` on 512 fresh
    sequences (``baseline_mse`` = 1/3, the error of always answering 0).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CueLSTM(n_cues + 1, n_cues, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(range(updates), desc="train cue LSTM", unit="update", disable=not progress, leave=False):
        batch = cue_batch(batch_size, steps, n_cues, rng)
        out = model(batch.inputs)  # [B, T, K]
        loss = (out - batch.cues[:, None]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    test = cue_batch(512, steps, n_cues, np.random.default_rng(seed + 1))
    with torch.no_grad():
        err = (model(test.inputs) - test.cues[:, None]).pow(2)  # [B, T, K]
    return model, {"mse": float(err.mean()), "mse_last_step": float(err[:, -1].mean()), "baseline_mse": 1.0 / 3.0}


# ---------------------------------------------------------------------------------------------- run


def copy_sources(task: str, inputs: np.ndarray, bits: int) -> dict[int, int]:
    """Answer step -> the input step it copies, for ``copy`` and ``repeat-copy`` (``{}`` otherwise).

    ``inputs [T, D]`` of one sequence; the delimiter is on channel ``bits`` at step L, the answer
    starts at L + 1 and copies input ``(t - L - 1) mod L`` (repeat copy's last step, the end marker,
    copies nothing).
    """
    if task not in ("copy", "repeat-copy"):
        return {}
    steps = inputs.shape[0]
    length = int(np.argmax(inputs[:, bits]))
    answer = steps - length - 1 - (task == "repeat-copy")
    return {length + 1 + j: j % length for j in range(answer)} if length > 0 else {}


def _demo_model(cfg: Config, device: torch.device):
    model, metrics = train_cue_lstm(
        steps=cfg.steps, hidden=cfg.hidden, updates=cfg.updates, seed=cfg.seed, progress=cfg.progress
    )
    inputs = cue_batch(1, cfg.steps, 2, np.random.default_rng(cfg.seed + 7)).inputs
    info = {"model": "cue-recall LSTM (trained now)", **metrics}
    title = f"LSTM on cue recall (T={cfg.steps}; test MSE {metrics['mse']:.4f}, baseline 0.333)"
    return model.to(device), inputs.to(device), input_labels(2), title, info, {"cue": 0}


def _checkpoint_model(cfg: Config, device: torch.device):
    from heed.agents.common.errors import require
    from heed.agents.trainers.sequence_utils import batch_to_tensors, load_sequence_model

    model, task, ckpt = load_sequence_model(str(cfg.checkpoint), device)
    if cfg.length is not None:
        require(hasattr(task, "fixed_length"), f"--length: task '{ckpt.meta['task']}' has no fixed length")
        task = task.fixed_length(cfg.length)
    batch = task.sample(1, np.random.default_rng(cfg.seed))
    inputs = batch_to_tensors(batch, task.loss, device)[0]

    def fn(x: torch.Tensor) -> torch.Tensor:
        return model(x)[0]

    info = {"model": f"{ckpt.meta.get('core')} on {ckpt.meta.get('task')} ({ckpt.path})",
            "copy_sources": copy_sources(str(ckpt.meta.get("task")), batch.inputs[0], getattr(task, "bits", 0))}
    return fn, inputs, None, f"{ckpt.meta.get('core')} on {ckpt.meta.get('task')}", info, None


def run(cfg: Config) -> dict:
    """Build or load the model, compute the Jacobians, write the figure; returns a summary dict."""
    from heed.agents.common.device import resolve_device
    from heed.agents.common.errors import HeedError, require
    from heed.agents.common.safe_io import claim_output_file, disk_errors
    from heed.agents.common.validate import validate
    from heed.analysis.figures import figure_to_array, log_image, save_figure, sequential_jacobian_figure
    from heed.analysis.memory_figures import copy_source_share
    from heed.analysis.saliency import AnalysisError
    from heed.analysis.sequential import cue_sensitivity_ratio

    validate(cfg)
    require(cfg.out.suffix.lower() == ".png", f"--out must end in .png, got '{cfg.out}'")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.checkpoint is not None:  # a bad checkpoint is refused before an output is claimed
        fn, inputs, labels, title, info, marks = _checkpoint_model(cfg, device)
        out = claim_output_file(cfg.out, cfg.overwrite, "--out")
    else:  # a refused --out costs no training
        out = claim_output_file(cfg.out, cfg.overwrite, "--out")
        fn, inputs, labels, title, info, marks = _demo_model(cfg, device)
    t = cfg.output_time
    require(-inputs.shape[1] <= t < inputs.shape[1],
            f"--output-time must be in [{-inputs.shape[1]}, {inputs.shape[1] - 1}] (the sequence has {inputs.shape[1]} steps), got {t}")
    try:
        fig, matrix, _ = sequential_jacobian_figure(fn, inputs, cfg.output_time, title, labels, marks)
    except AnalysisError as exc:
        raise HeedError(str(exc)) from None
    with disk_errors(out):
        save_figure(fig, out)
    image = figure_to_array(fig)
    summary = {
        **info,
        "figure": str(cfg.out),
        "steps": int(inputs.shape[1]),
        "output_time": t,
        "sensitivity_last_row": [round(float(v), 5) for v in matrix[t].cpu()],
        "cue_ratio": cue_sensitivity_ratio(matrix.cpu(), t),
    }
    sources = summary.pop("copy_sources", None)
    if sources:
        diagonal = copy_source_share(matrix.cpu(), sources)
        summary["copy_diagonal_share"] = diagonal.mean_share
        summary["copy_diagonal_peak_rate"] = diagonal.peak_rate
        summary["copy_answer_steps"] = len(sources)
    if cfg.tensorboard is not None:
        from heed.agents.common.run import open_writer

        with disk_errors(cfg.tensorboard):
            writer = open_writer(cfg.tensorboard)
            log_image(writer, "sequential_jacobian/figure", image)
            writer.close()
    return summary


def main(cfg: Config) -> dict:
    """Entry point: run and print where the figure is."""
    summary = run(cfg)
    print(f"model: {summary['model']}")
    if "mse" in summary:
        print(f"test MSE {summary['mse']:.4f} (always answering 0 gives {summary['baseline_mse']:.3f})")
        print(
            f"||dy_t/dx_s|| at t={summary['output_time']}: the cue (s=0) is {summary['cue_ratio']:.1f}x"
            " the largest later input step"
        )
    if "copy_diagonal_share" in summary:
        print(f"lag diagonal: {summary['copy_diagonal_share']:.1%} of each answer step's sensitivity "
              f"||dy_t/dx_s|| is on the input step it copies (mean over {summary['copy_answer_steps']} steps); "
              f"that input is the row's largest entry for {summary['copy_diagonal_peak_rate']:.0%} of the steps")
    print(f"figure: {summary['figure']}")
    if cfg.tensorboard is not None:
        print(f"tensorboard --logdir {cfg.tensorboard}")
    return summary


if __name__ == "__main__":
    from heed.agents.common.cli import parse_config
    from heed.agents.common.errors import cli_main

    cli_main(lambda: main(parse_config(Config, prog="sequential_jacobian.py", description=__doc__)))
