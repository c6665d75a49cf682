"""Shared by the supervised trainer and ``scripts/evaluate_memory.py``: losses, metrics, option
parsing, building a task and a model from registry names, and loading a trained sequence model.

Losses (``task.loss``):

- ``"bits"``: sigmoid outputs, binary cross-entropy on scored steps. The optimised loss is the sum
  over scored bits per sequence (nats, as Collier & Beel: it keeps their gradient-norm clip of 50
  meaningful); the reported cost is in **bits per sequence**, sum_t,k mask_t BCE_tk / ln 2, averaged
  over sequences (the NTM paper's measure). A bit is wrong when ``(logit > 0) != target``.
- ``"classes"``: softmax cross-entropy per scored step (mean per scored step), with the per-step
  error rate and the sequence error rate (any scored step wrong).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.checkpoint import load_checkpoint, load_module_state
from heed.agents.common.errors import HeedError, suggest
from heed.agents.sequence import SEQUENCE_MODELS
from heed.envs.tasks import TASKS, Batch

KIND = "sequence-model"


def import_registries(extra: tuple[str, ...] = ()) -> None:
    """Import the modules that register tasks and models: ``agents.cores.registry``, ``envs.algorithmic``
    and those in :data:`agents.trainers.supervised.REGISTRY_MODULES`; modules that do not exist are skipped."""
    from heed.agents.trainers.supervised import REGISTRY_MODULES

    for name in ("heed.envs.algorithmic", "heed.agents.cores.registry") + tuple(REGISTRY_MODULES) + tuple(extra):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise


def sequence_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, kind: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss and detached metrics.

    Args:
        logits: ``[B, T, K]``; targets: ``[B, T, K]`` floats (bits) or ``[B, T]`` int64 (classes);
        mask: ``[B, T]``; kind: ``"bits"`` or ``"classes"``.

    Returns:
        ``(loss, metrics)``: for bits ``bits_per_sequence``, ``bit_errors_per_sequence``,
        ``bit_error_rate``; for classes ``cost_per_sequence`` (bits), ``error_rate``, ``sequence_error_rate``.
    """
    batch = logits.shape[0]
    scored = mask.sum().clamp_min(1.0)
    if kind == "bits":
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1) * mask  # [B, T]
        loss = bce.sum() / batch
        with torch.no_grad():
            wrong = (((logits > 0).to(targets.dtype) != targets).to(mask.dtype).sum(-1) * mask).sum()
            metrics = {
                "bits_per_sequence": bce.sum().detach() / (batch * math.log(2.0)),
                "bit_errors_per_sequence": wrong / batch,
                "bit_error_rate": wrong / (scored * logits.shape[-1]),
            }
        return loss, metrics
    if kind == "classes":
        ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none") * mask  # [B, T]
        loss = ce.sum() / scored
        with torch.no_grad():
            wrong = (logits.argmax(-1) != targets).to(mask.dtype) * mask
            metrics = {
                "cost_per_sequence": ce.sum().detach() / (batch * math.log(2.0)),
                "error_rate": wrong.sum() / scored,
                "sequence_error_rate": (wrong.sum(1) > 0).to(mask.dtype).mean(),
            }
        return loss, metrics
    raise HeedError(f"unknown loss kind '{kind}': tasks declare 'bits' or 'classes'")


def headline(kind: str) -> str:
    """The metric a task is judged by: ``bits_per_sequence`` or ``error_rate``."""
    return "bits_per_sequence" if kind == "bits" else "error_rate"


def batch_to_tensors(batch: Batch, kind: str, device: torch.device) -> tuple[torch.Tensor, ...]:
    """numpy -> torch at the task boundary: inputs float32, targets float32 (bits) or int64 (classes), mask."""
    inputs = torch.as_tensor(batch.inputs, dtype=torch.float32, device=device)
    targets = torch.as_tensor(batch.targets, dtype=torch.float32 if kind == "bits" else torch.int64, device=device)
    mask = torch.as_tensor(batch.mask, dtype=torch.float32, device=device)
    return inputs, targets, mask


def _literal(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_options(text: str, what: str) -> dict[str, Any]:
    """``'{"a": 1}'`` (JSON) or ``'a=1,b=lstm'`` / ``'a=1 b=2'`` -> dict; HeedError on bad syntax."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HeedError(f"--{what} is not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise HeedError(f"--{what} must be a JSON object")
        return value
    out: dict[str, Any] = {}
    for item in text.replace(",", " ").split():
        if "=" not in item:
            raise HeedError(f"--{what}: '{item}' is not key=value (or pass a JSON object)")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = _literal(value)
    return out


def accepted_options(fn: Any) -> tuple[set[str], bool, dict[str, Any]]:
    """(keyword names, accepts **kwargs, defaults) of a builder or task factory."""
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var = any(p.kind == p.VAR_KEYWORD for p in params)
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return names, var, defaults


def check_options(fn: Any, options: dict[str, Any], what: str, name: str) -> None:
    names, var, _ = accepted_options(fn)
    names -= {"input_size", "output_size"}
    for key in options:
        if not var and key not in names:
            raise HeedError(
                f"{what} '{name}' has no option '{key}'.{suggest(key, names)} Options: {', '.join(sorted(names))}"
            )


def build_task(name: str, options: dict[str, Any]):
    """``TASKS[name](**options)`` with one-line errors for unknown names and options."""
    import_registries()
    if name not in TASKS:
        raise HeedError(f"unknown task '{name}'.{suggest(name, TASKS)} Tasks: {', '.join(sorted(TASKS))}")
    check_options(TASKS[name], options, "task", name)
    try:
        return TASKS[name](**options)
    except (TypeError, ValueError) as exc:
        raise HeedError(f"task '{name}': {exc}") from None


def build_model(
    name: str, input_size: int, output_size: int, options: dict[str, Any], common: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """``SEQUENCE_MODELS[name](D, K, **options)``; ``common`` options go only where the builder takes them.

    Returns:
        the model and the options actually passed (recorded in checkpoints).
    """
    import_registries()
    if name not in SEQUENCE_MODELS:
        raise HeedError(
            f"unknown core '{name}'.{suggest(name, SEQUENCE_MODELS)} Cores: {', '.join(sorted(SEQUENCE_MODELS))}"
        )
    builder = SEQUENCE_MODELS[name]
    names, var, _ = accepted_options(builder)
    passed = {k: v for k, v in (common or {}).items() if v is not None and (var or k in names)}
    check_options(builder, options, "core", name)
    passed.update(options)
    try:
        model = builder(input_size, output_size, **passed)
    except (TypeError, ValueError) as exc:
        raise HeedError(f"core '{name}': {exc}") from None
    return model, passed


def load_sequence_model(path: str, device: torch.device | str = "cpu"):
    """Rebuild the task and model of a checkpoint (run dir, checkpoint dir or shipped weights).

    Returns:
        ``(model in eval mode, task, checkpoint)``.
    """
    ckpt = load_checkpoint(path, expect_kind=KIND)
    meta = ckpt.meta
    for key in ("task", "core", "task_options", "model_options"):
        if key not in meta:
            raise HeedError(f"checkpoint '{ckpt.path}' lacks '{key}' in meta.json")
    task = build_task(meta["task"], dict(meta["task_options"]))
    model, _ = build_model(meta["core"], task.input_size, task.output_size, dict(meta["model_options"]))
    load_module_state(model, ckpt.tensors, where=str(ckpt.path))
    return model.to(device).eval(), task, ckpt


@torch.no_grad()
def evaluate(model: nn.Module, task, batches: list[Batch], device: torch.device | str = "cpu") -> dict[str, float]:
    """Average the metrics of :func:`sequence_loss` over fixed batches (weighted by batch size)."""
    totals: dict[str, float] = {}
    count = 0
    for batch in batches:
        inputs, targets, mask = batch_to_tensors(batch, task.loss, torch.device(device))
        logits, _, _ = model(inputs)
        loss, metrics = sequence_loss(logits, targets, mask, task.loss)
        b = inputs.shape[0]
        count += b
        for k, v in {"loss": loss, **metrics}.items():
            totals[k] = totals.get(k, 0.0) + float(v) * b
    return {k: v / max(count, 1) for k, v in totals.items()}


def optimal_cost(task, batches: list[Batch]) -> float | None:
    """Mean cost per sequence of the task's known optimal predictor on ``batches``, when it has one.

    Tasks with a closed-form optimum (dynamic n-grams: the Bayes estimator) define
    ``optimal_bits(batch) -> [B]``; others return ``None``.
    """
    fn = getattr(task, "optimal_bits", None)
    if fn is None:
        return None
    costs = np.concatenate([np.asarray(fn(b), dtype=np.float64) for b in batches])
    return float(costs.mean())


def fixed_batches(task, count: int, batch_size: int, seed: int) -> list[Batch]:
    """``count`` sequences in batches of ``batch_size`` from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    sizes = [batch_size] * (count // batch_size) + ([count % batch_size] if count % batch_size else [])
    return [task.sample(n, rng) for n in sizes]
