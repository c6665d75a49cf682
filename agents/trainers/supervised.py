"""Supervised training of any sequence model on any registered task.

``python scripts/train.py supervised --task copy --seed 1 --run-dir runs/copy model:ntm --model.memory-size 64``

Tasks come from :data:`heed.envs.tasks.TASKS`, models from the table of parts (:mod:`heed.agents.parts`:
every core, with a linear readout, and the self-attention models), chosen last as ``model:NAME``. The
defaults follow Collier & Beel (2018): Adam 1e-3, batch 32, gradient-norm clip 50 (RMSProp with
momentum, as in the NTM paper, via ``--optimizer rmsprop``). TensorBoard gets ``losses/*``,
``charts/*`` (bits per sequence or error rate, sequences/s, CPU seconds) and the attention
weightings as images; ``metrics.jsonl`` keeps every evaluation with the training CPU time spent.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from heed.agents.common.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    restore_optimizer,
    save_run_checkpoint,
)
from heed.agents.common.device import resolve_device
from heed.agents.common.errors import HeedError, require
from heed.agents.common.run import config_to_dict, default_run_dir, open_writer, prepare_run_dir, save_config
from heed.agents.cores.ntm import NTMConfig
from heed.agents.parts import build_model, model_choice, part_from_dict, part_to_dict
from heed.agents.trainers import sequence_utils as su

#: any core (with a readout) or sequence model, each with its own defaults (Collier & Beel's for the NTM)
SupervisedModel = model_choice()

DEFAULT_SEQUENCES = 200_000


@dataclass(frozen=True)
class Config:
    """Train a sequence model (``model:NAME``, last on the command line) on a task (``--task``)."""

    task: str = "copy"
    """task name in envs.tasks.TASKS (copy, repeat-copy, associative-recall, dynamic-ngrams, priority-sort, ...)"""
    model: SupervisedModel = field(default_factory=NTMConfig)
    """the model, chosen last: model:NAME [--model.FIELD VALUE ...] (a core with a readout, or transformer, ut, ut-act)"""
    seed: int = 1
    """seed for torch and the task generator"""
    run_dir: Path | None = None
    """where checkpoints, config.json, metrics.jsonl and TensorBoard events go (default runs/supervised__TASK-CORE__SEED__TIME)"""
    resume: Path | None = None
    """continue the run in this dir from its latest checkpoint (other options come from its config.json)"""
    total_sequences: int | None = None
    """training budget in sequences (default 200000; on --resume: the saved budget unless given)"""
    max_cpu_seconds: float | None = None
    """also stop after this much training CPU time (time.process_time, evaluation excluded)"""
    stop_at: float | None = None
    """also stop once the evaluation metric (bits per sequence, or error rate for class tasks) falls below this"""
    batch_size: int = 32
    """sequences per update"""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """adam (Collier & Beel) or rmsprop with momentum (NTM paper)"""
    learning_rate: float = 1e-3
    """step size"""
    momentum: float = 0.9
    """RMSProp momentum"""
    clip_grad_norm: float = 50.0
    """clip the global gradient norm to this (0 disables)"""
    clip_grad_value: float = 0.0
    """clip every gradient element to +-this (0 disables; the NTM paper used 10)"""
    task_options: str = ""
    """task options: a JSON object or key=value,key=value (e.g. max_len=10)"""
    eval_every: int = 3200
    """evaluate on a fixed held-out set every this many sequences"""
    eval_sequences: int = 256
    """size of the held-out set"""
    log_every: int = 640
    """log training scalars every this many sequences"""
    image_every: int = 16000
    """log the attention weightings as TensorBoard images every this many sequences (0 disables)"""
    checkpoint_every: int = 20000
    """checkpoint every this many sequences (and at the end)"""
    threads: int = 1
    """torch CPU threads (small recurrent models run fastest on one)"""
    device: str = "cpu"
    """auto, cpu or cuda"""
    progress: bool = True
    """show a tqdm progress bar"""


def _validate(cfg: Config) -> None:
    require(cfg.total_sequences is None or cfg.total_sequences >= 0, "--total-sequences must be >= 0")
    require(cfg.max_cpu_seconds is None or cfg.max_cpu_seconds >= 0, "--max-cpu-seconds must be >= 0")
    require(cfg.batch_size >= 1, "--batch-size must be >= 1")
    require(cfg.learning_rate > 0, "--learning-rate must be > 0")
    require(cfg.clip_grad_norm >= 0 and cfg.clip_grad_value >= 0, "gradient clips must be >= 0")
    for name in ("eval_every", "eval_sequences", "log_every", "checkpoint_every"):
        require(getattr(cfg, name) >= 1, f"--{name.replace('_', '-')} must be >= 1")
    require(cfg.image_every >= 0, "--image-every must be >= 0")
    require(cfg.threads >= 1, "--threads must be >= 1")


def _resume_config(cfg: Config) -> tuple[Config, Path]:
    run_dir = Path(cfg.resume)
    saved = run_dir / "config.json"
    if not saved.exists():
        raise HeedError(f"--resume {run_dir}: no config.json there (is it a supervised run dir?)")
    values = json.loads(saved.read_text())
    if "model" in values:
        values["model"] = part_from_dict(values["model"])
    else:  # a run dir from before the table of parts: the name in "core", options in flat fields
        options = {**values, **su.parse_options(values.get("model_options", ""), "model-options")}
        values["model"] = su.legacy_model_config(values["core"], options)
    fields = {f.name for f in dataclasses.fields(Config)}
    values = {k: v for k, v in values.items() if k in fields}
    for key in ("total_sequences", "max_cpu_seconds", "stop_at"):
        if getattr(cfg, key) is not None:
            values[key] = getattr(cfg, key)
    values.update(run_dir=str(run_dir), resume=None, progress=cfg.progress)
    for key in ("run_dir", "resume"):
        values[key] = Path(values[key]) if values[key] is not None else None
    return Config(**values), run_dir


def _make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate)
    return torch.optim.RMSprop(params, lr=cfg.learning_rate, momentum=cfg.momentum, alpha=0.95)


def _log_images(writer, model: torch.nn.Module, batch, task, step: int, device: torch.device) -> None:
    from heed.analysis.memory_figures import weighting_image

    inputs, _, _ = su.batch_to_tensors(batch, task.loss, device)
    with torch.no_grad():
        _, attention, _ = model(inputs[:1])
    for key, value in attention.items():
        value = value[0].float().cpu()  # [T, ...]
        if value.dim() == 2:
            value = value.unsqueeze(1)
        if value.dim() != 3:
            continue
        for head in range(value.shape[1]):
            writer.add_image(f"attention/{key}_{head}", weighting_image(value[:, head]), step, dataformats="HW")


def main(cfg: Config) -> dict:
    """Train; return the last evaluation metrics (plus counters)."""
    resuming = cfg.resume is not None
    if resuming:
        cfg, run_dir = _resume_config(cfg)
    _validate(cfg)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    task_options = su.parse_options(cfg.task_options, "task-options")
    task = su.build_task(cfg.task, task_options)
    # store the resolved options (defaults included), so a later change of a task default cannot
    # change what a saved checkpoint is rebuilt with
    task_options = {**su.accepted_options(su.TASKS[cfg.task])[2], **task_options}
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, task.input_size, task.output_size).to(device)
    optimizer = _make_optimizer(cfg, model.parameters())
    rng = np.random.default_rng(cfg.seed)
    counters = {"sequences": 0, "updates": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0}
    if resuming:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise HeedError(f"--resume {run_dir}: the run has no checkpoint yet; start it again instead")
        loaded = load_checkpoint(ckpt, expect_kind=su.KIND)
        load_module_state(model, loaded.tensors, where=str(loaded.path))
        if loaded.optimizer_tensors is not None and "optimizer" in loaded.meta:
            restore_optimizer(optimizer, loaded.optimizer_tensors, loaded.meta["optimizer"])
        counters.update(loaded.counters)
        if "rng" in loaded.meta:
            rng.bit_generator.state = loaded.meta["rng"]
    else:
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir("supervised", f"{cfg.task}-{cfg.model.name}", cfg.seed)
    run_dir = prepare_run_dir(run_dir)
    if not resuming:
        save_config(run_dir, cfg)
    total = DEFAULT_SEQUENCES if cfg.total_sequences is None else cfg.total_sequences
    writer = open_writer(run_dir, cfg, purge_step=counters["sequences"] if resuming else None)
    eval_set = su.fixed_batches(task, cfg.eval_sequences, min(cfg.batch_size, 16), seed=cfg.seed + 1_000_003)
    key = su.headline(task.loss)
    optimum = su.optimal_cost(task, eval_set)  # e.g. the Bayes-optimal n-gram cost on the same set
    meta_base = {
        "kind": su.KIND, "config": config_to_dict(cfg), "task": cfg.task, "task_options": task_options,
        "core": cfg.model.name, "model": part_to_dict(cfg.model), "loss": task.loss,
        "input_size": task.input_size, "output_size": task.output_size,
    }

    def checkpoint() -> None:
        meta = dict(meta_base, counters=dict(counters), rng=rng.bit_generator.state)
        save_run_checkpoint(run_dir, counters["sequences"], model.state_dict(), meta, optimizer)

    def evaluate() -> dict:
        model.eval()
        result = su.evaluate(model, task, eval_set, device)
        model.train()
        for name, value in result.items():
            writer.add_scalar(f"eval/{name}", value, counters["sequences"])
        record = {**counters, **{f"eval_{k}": v for k, v in result.items()}}
        if optimum is not None:
            record["eval_optimal_bits_per_sequence"] = optimum
            writer.add_scalar("eval/optimal_bits_per_sequence", optimum, counters["sequences"])
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return result

    last = {"eval": None, "log": counters["sequences"], "image": counters["sequences"], "ckpt": counters["sequences"]}
    window: list[dict] = []
    bar = tqdm(total=total, initial=counters["sequences"], unit="seq", disable=not cfg.progress, dynamic_ncols=True)
    wall_start, wall_base = time.perf_counter(), counters["wall_seconds"]
    log_wall, log_seqs = time.perf_counter(), counters["sequences"]
    result: dict = {}
    model.train()
    try:
        while counters["sequences"] < total and (cfg.max_cpu_seconds is None or counters["cpu_seconds"] < cfg.max_cpu_seconds):
            cpu0 = time.process_time()
            batch = task.sample(cfg.batch_size, rng)
            inputs, targets, mask = su.batch_to_tensors(batch, task.loss, device)
            logits, attention, aux = model(inputs)
            loss, metrics = su.sequence_loss(logits, targets, mask, task.loss)
            if "ponder" in attention:  # ACT models: mean ponder time N + R per position
                metrics["ponder_time"] = attention["ponder"].detach().float().mean()
            optimizer.zero_grad(set_to_none=True)
            (loss + aux).backward()
            if cfg.clip_grad_value > 0:
                torch.nn.utils.clip_grad_value_(model.parameters(), cfg.clip_grad_value)
            if cfg.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            counters["cpu_seconds"] += time.process_time() - cpu0
            counters["sequences"] += inputs.shape[0]
            counters["updates"] += 1
            counters["wall_seconds"] = wall_base + time.perf_counter() - wall_start
            bar.update(inputs.shape[0])
            window.append({"loss": float(loss.detach()), "aux_loss": float(aux.detach()), **{k: float(v) for k, v in metrics.items()}})
            step = counters["sequences"]
            if step - last["log"] >= cfg.log_every:
                now = time.perf_counter()
                for name in window[0]:
                    group = "losses" if "loss" in name else "charts"
                    writer.add_scalar(f"{group}/{name}", float(np.mean([w[name] for w in window])), step)
                writer.add_scalar("charts/sequences_per_second", (step - log_seqs) / max(now - log_wall, 1e-9), step)
                writer.add_scalar("charts/cpu_seconds", counters["cpu_seconds"], step)
                bar.set_postfix({key: f"{np.mean([w[key] for w in window]):.3g}"})
                window, last["log"], log_wall, log_seqs = [], step, now, step
            if last["eval"] is None or step - last["eval"] >= cfg.eval_every:
                result, last["eval"] = evaluate(), step
                if cfg.stop_at is not None and result[key] < cfg.stop_at:
                    break
            if cfg.image_every and step - last["image"] >= cfg.image_every:
                _log_images(writer, model, eval_set[0], task, step, device)
                last["image"] = step
            if step - last["ckpt"] >= cfg.checkpoint_every:
                checkpoint()
                last["ckpt"] = step
    finally:
        bar.close()
        if counters["updates"]:
            checkpoint()
        writer.flush()
    if last["eval"] != counters["sequences"]:
        result = evaluate()
    writer.close()
    return {**result, **counters, "run_dir": str(run_dir)}
