"""Supervised training of any sequence model on any registered task.

``python scripts/train.py supervised --task copy --seed 1 --run-dir runs/copy model:ntm --model.memory-size 64``
``python scripts/train.py supervised --resume runs/copy --total-sequences 400000``

Tasks come from :data:`heed.envs.tasks.TASKS`, models from the table of parts (:mod:`heed.agents.parts`:
every core, with a linear readout, and the self-attention models), chosen last as ``model:NAME``. The
defaults follow Collier & Beel (2018): Adam 1e-3, batch 32, gradient-norm clip 50 (RMSProp with
momentum, as in the NTM paper, via ``--optimizer rmsprop``). TensorBoard gets ``losses/*``,
``charts/*`` (bits per sequence or error rate, sequences/s, CPU seconds) and the attention
weightings as images (``attention/*``); ``metrics.jsonl`` keeps every evaluation with the training
CPU time spent. A task with lessons (the DNC graph tasks, :mod:`heed.envs.graphs`) is trained as a
curriculum: after each evaluation on the current lesson's held-out set, the run moves to the next
lesson once the accuracy (1 - error rate, by the modal output) reaches the task's ``pass_rate``; the
lesson is logged as ``charts/lesson``, kept in the checkpoint's counters, and ``--resume`` continues
from it (``--task-options lesson=K`` starts at lesson K). A task whose answers are fed back (shortest
path) gets the model's own previous answers mixed in with probability 1 - ``beta``
(:func:`sequence_utils.feed_back`). ``--compile`` compiles the core with ``torch.compile``, several
time steps per graph (:func:`~heed.agents.cores.base.compile_step`), before the first update, its CPU
time counted in the run's; evaluation, images and fed-back answers run the core eagerly; a compilation that fails
prints one line and the run trains eagerly. The run plumbing (``--seed --device --threads --run-dir
--resume --progress --compile``, the run-folder guard, checkpoints, the NaN guard, Ctrl-C/SIGTERM) is :mod:`heed.agents.common.session`'s.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from heed.agents.common.errors import HeedError
from heed.agents.common.run import Every, config_to_dict
from heed.agents.common.session import ResumeOverride, Run, RunConfig, RunFlags, start_run
from heed.agents.common.state import generator_states, restore_training_state
from heed.agents.common.validate import AtLeastOne, NonNegative, Positive, Range
from heed.agents.cores.base import compile_step
from heed.agents.cores.ntm import NTMConfig
from heed.agents.parts import CORES, build_model, model_choice, part_to_dict
from heed.agents.trainers import sequence_utils as su
from heed.envs.sequence import held_out_task

#: any core (with a readout) or sequence model, each with its own defaults (Collier & Beel's for the NTM)
SupervisedModel = model_choice()

DEFAULT_SEQUENCES = 200_000
KIND = "supervised"


@dataclass(frozen=True)
class Config:
    """Train a sequence model (``model:NAME``, last on the command line) on a task (``--task``)."""

    task: str = "copy"
    """task name in envs.tasks.TASKS (copy, repeat-copy, associative-recall, dynamic-ngrams, priority-sort, ...)"""
    model: SupervisedModel = field(default_factory=NTMConfig)
    """the model, chosen last: model:NAME [--model.FIELD VALUE ...] (a core with a readout, or transformer, ut, ut-act)"""
    total_sequences: Annotated[int | None, AtLeastOne, ResumeOverride] = None
    """training budget in sequences (default 200000; on --resume: the saved budget unless given)"""
    max_cpu_seconds: Annotated[float | None, NonNegative, ResumeOverride] = None
    """also stop after this much training CPU time (time.process_time, evaluation excluded)"""
    stop_at: Annotated[float | None, NonNegative, ResumeOverride] = None
    """also stop once the evaluation metric (bits per sequence, or error rate for class tasks) falls below this"""
    batch_size: Annotated[int, Range(1, 65_536)] = 32
    """sequences per update"""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """adam (Collier & Beel) or rmsprop with momentum (NTM paper)"""
    learning_rate: Annotated[float, Positive] = 1e-3
    """step size"""
    momentum: Annotated[float, Range(0, 1, hi_open=True)] = 0.9
    """RMSProp momentum"""
    clip_grad_norm: Annotated[float, NonNegative] = 50.0
    """clip the global gradient norm to this (0 disables)"""
    clip_grad_value: Annotated[float, NonNegative] = 0.0
    """clip every gradient element to +-this (0 disables; the NTM paper used 10)"""
    task_options: str = ""
    """task options: a JSON object or key=value,key=value (e.g. max_len=10)"""
    eval_every: Annotated[int, AtLeastOne] = 3200
    """evaluate on a fixed held-out set every this many sequences"""
    eval_sequences: Annotated[int, Range(1, 1_000_000)] = 256
    """size of the held-out set"""
    log_every: Annotated[int, AtLeastOne] = 640
    """log training scalars every this many sequences"""
    image_every: Annotated[int, NonNegative] = 16000
    """log the attention weightings as TensorBoard images every this many sequences (0 disables)"""
    checkpoint_every: Annotated[int, AtLeastOne] = 20000
    """checkpoint every this many sequences (and at the end)"""
    run: RunFlags = field(default_factory=RunConfig)
    """--seed (torch and the task generator), --device, --threads, --run-dir, --resume, --progress, --compile"""


#: the model fields of a config.json written before the table of parts (the model is named in "core")
_LEGACY_MODEL_FIELDS = ("core", "model_options", "hidden_size", "memory_size", "memory_width", "read_heads",
                        "write_heads", "controller", "tau")


def migrate_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved ``config.json`` in today's names: an old run's ``core`` + flat model options become ``model``."""
    if "model" in saved or "core" not in saved:
        return saved
    saved = dict(saved)
    flat = {k: saved.pop(k) for k in _LEGACY_MODEL_FIELDS if k in saved}
    if not isinstance(flat["core"], str) or not isinstance(flat.get("model_options", ""), str):
        return {**saved, **flat}  # not the old form: the usual checks will name the bad field
    options = {**flat, **su.parse_options(flat.get("model_options", ""), "model-options")}
    saved["model"] = part_to_dict(su.legacy_model_config(flat["core"], options))
    return saved


def _build_task(cfg: Config) -> tuple[Any, dict[str, Any]]:
    """The task and its resolved options (defaults included, so that a later change of a task default
    cannot change what a saved checkpoint is rebuilt with)."""
    options = su.parse_options(cfg.task_options, "task-options")
    task = su.build_task(cfg.task, options)
    return task, {**su.accepted_options(su.TASKS[cfg.task])[2], **options}


def _make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate)
    return torch.optim.RMSprop(params, lr=cfg.learning_rate, momentum=cfg.momentum, alpha=0.95)


def _check_compile(cfg: Config) -> None:
    """``--compile`` needs a core (a model of the table's cores): one line otherwise."""
    if cfg.run.compile and cfg.model.name not in CORES:
        raise HeedError(f"--compile compiles a recurrent core's step; model:{cfg.model.name} has no core")


def _compile_core(model: torch.nn.Module, cfg: Config) -> float:
    """``--compile``: compile the model's core step (:func:`compile_step`); return the CPU seconds spent,
    the C++ compiler's included."""
    done = compile_step(model.core, cfg.batch_size)
    if done.failure is not None:
        print(f"--compile failed, training eagerly: {done.failure}", file=sys.stderr)
    else:
        print(f"compiled the {cfg.model.name} step ({model.core.compiled_steps.steps} steps per graph) in "
              f"{done.cpu_seconds:.1f} CPU-s (counted in the run's CPU time)", file=sys.stderr)
    return done.cpu_seconds


def _eager() -> Any:
    """A context in which a compiled core runs eagerly: evaluation, images and fed-back answers (no
    gradient, other batch sizes) would each need graphs of their own."""
    return torch.compiler.set_stance("force_eager")


def _log_images(run: Run, model: torch.nn.Module, batch, task, step: int) -> None:
    from heed.analysis.memory_figures import weighting_image

    inputs, _, _ = su.batch_to_tensors(batch, task.loss, run.device)
    with torch.no_grad():
        _, attention, _ = model(inputs[:1])
    for key, value in attention.items():
        value = value[0].float().cpu()  # [T, ...]
        if value.dim() == 2:
            value = value.unsqueeze(1)
        if value.dim() != 3:
            continue
        for head in range(value.shape[1]):
            run.writer.add_image(f"attention/{key}_{head}", weighting_image(value[:, head]), step, dataformats="HW")


def main(cfg: Config) -> dict:
    """Train (or resume with ``--resume``); return the last evaluation metrics (plus counters)."""
    if cfg.run.resume is None:
        _build_task(cfg)  # an unknown task or option is refused before a run folder is made
        _check_compile(cfg)
    run = start_run(KIND, cfg, name=f"{cfg.task}-{cfg.model.name}", checkpoint_kind=su.KIND,
                    metric_tags=("eval/bits_per_sequence", "eval/error_rate"), migrate=migrate_config,
                    compiles=True)
    cfg, device = run.cfg, run.device
    if run.resumed:
        _check_compile(cfg)  # the saved model (a new run's was checked before its folder was made)
    task, task_options = _build_task(cfg)
    model = build_model(cfg.model, task.input_size, task.output_size).to(device)
    optimizer = _make_optimizer(cfg, model.parameters())
    rng = np.random.default_rng(cfg.run.seed)
    counters = {"sequences": 0, "updates": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0}
    lessons = int(getattr(task, "lessons", 0))  # > 0: a curriculum task (see the module docstring)
    if lessons:
        counters["lesson"] = int(task.lesson)
    if run.checkpoint is not None:
        counters = restore_training_state(run.checkpoint, model, optimizer, rng, counters)
    if lessons:
        task = task.at_lesson(min(max(int(counters["lesson"]), 1), lessons))
    total = DEFAULT_SEQUENCES if cfg.total_sequences is None else cfg.total_sequences
    if cfg.run.compile:
        counters["cpu_seconds"] += _compile_core(model, cfg)

    def held_out(task) -> list:
        """The held-out set (per lesson for a curriculum task)."""
        seed = cfg.run.seed + 1_000_003 + (1_000 * counters["lesson"] if lessons else 0)
        return su.fixed_batches(held_out_task(task), cfg.eval_sequences, min(cfg.batch_size, 16), seed=seed)

    eval_set = held_out(task)
    key = su.headline(task.loss)
    optimum = su.optimal_cost(task, eval_set)  # e.g. the Bayes-optimal n-gram cost on the same set
    meta = {"task": cfg.task, "task_options": task_options, "core": cfg.model.name, "model": part_to_dict(cfg.model),
            "loss": task.loss, "input_size": task.input_size, "output_size": task.output_size}
    saved_at = [run.start_step if run.resumed else -1]

    def checkpoint() -> None:
        """Save the completed updates (once per step)."""
        if saved_at[0] != counters["sequences"]:
            run.save(counters["sequences"], model.state_dict(), config_to_dict(cfg), dict(counters), optimizer,
                     kind=su.KIND, rng=generator_states(rng), **meta)
            saved_at[0] = counters["sequences"]

    def evaluate() -> dict:
        nonlocal task, eval_set
        model.eval()
        with _eager():
            result = su.evaluate(model, task, eval_set, device)
        model.train()
        if optimum is not None:
            result["optimal_bits_per_sequence"] = optimum
        run.log_scalars("eval", result, counters["sequences"])
        run.append_metrics(counters["sequences"], {**counters, **{f"eval_{k}": v for k, v in result.items()}})
        if lessons:
            run.log_scalars("charts", {"lesson": counters["lesson"]}, counters["sequences"])
            if 1.0 - result["error_rate"] >= task.pass_rate and counters["lesson"] < lessons:
                counters["lesson"] += 1  # lesson solved: the next one, with its own held-out set
                task = task.at_lesson(counters["lesson"])
                eval_set = held_out(task)
        return result

    start = counters["sequences"]
    log_due, eval_due, image_due, checkpoint_due = (Every(n, start) for n in (
        cfg.log_every, cfg.eval_every, cfg.image_every, cfg.checkpoint_every))
    window: list[dict] = []
    wall_start, wall_base = time.perf_counter(), counters["wall_seconds"]
    log_wall, log_seqs = time.perf_counter(), start
    result: dict = {}
    evaluated_at = -1
    model.train()
    bar = tqdm(total=total, initial=start, unit="seq", disable=not cfg.run.progress, dynamic_ncols=True)
    with run.interruptible(checkpoint, "--total-sequences"), bar:
        while counters["sequences"] < total and (cfg.max_cpu_seconds is None or counters["cpu_seconds"] < cfg.max_cpu_seconds):
            cpu0 = time.process_time()
            batch = task.sample(cfg.batch_size, rng)
            inputs, targets, mask = su.batch_to_tensors(batch, task.loss, device)
            if getattr(task, "feedback", False):  # structured prediction: mix in the model's own answers
                with _eager():
                    inputs = su.feed_back(model, inputs, mask, task.beta, rng)
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
            window.append({"loss": float(loss.detach()), "aux_loss": float(aux.detach()),
                           **{k: float(v) for k, v in metrics.items()}})
            step = counters["sequences"]
            if log_due.due(step):  # a NaN/inf loss stops the run here, keeping the last finite checkpoint
                means = {name: float(np.mean([w[name] for w in window])) for name in window[0]}
                now = time.perf_counter()
                run.log_scalars("losses", {k: v for k, v in means.items() if "loss" in k}, step)
                run.log_scalars("charts", {**{k: v for k, v in means.items() if "loss" not in k},
                                           "sequences_per_second": (step - log_seqs) / max(now - log_wall, 1e-9),
                                           "cpu_seconds": counters["cpu_seconds"]}, step)
                bar.set_postfix({key: f"{means[key]:.3g}"})
                window, log_wall, log_seqs = [], now, step
            if eval_due.due(step):
                result, evaluated_at = evaluate(), step
                if cfg.stop_at is not None and result[key] < cfg.stop_at:
                    break
            if image_due.due(step):
                with _eager():
                    _log_images(run, model, eval_set[0], task, step)
            if checkpoint_due.due(step):
                checkpoint()
    if counters["updates"]:
        checkpoint()
    if evaluated_at != counters["sequences"]:
        result = evaluate()
    run.finish({f"eval/{key}": result[key]}, "--total-sequences", counters["sequences"])
    return {**result, **counters, "run_dir": str(run.dir)}
