"""Shared by the supervised trainer and the scripts that read its checkpoints: losses, metrics, task
option parsing, building a task by name, and rebuilding a trained sequence model from a checkpoint
(its model config is stored in the meta; :mod:`heed.agents.parts` builds it).

Losses (``task.loss``):

- ``"bits"``: sigmoid outputs, binary cross-entropy on scored steps. The optimised loss is the sum
  over scored bits per sequence (nats, as Collier & Beel: it keeps their gradient-norm clip of 50
  meaningful); the reported cost is in **bits per sequence**, sum_t,k mask_t BCE_tk / ln 2, averaged
  over sequences (the NTM paper's measure). A bit is wrong when ``(logit > 0) != target``.
- ``"classes"``: softmax cross-entropy per scored step (mean per scored step), with the per-step
  error rate and the sequence error rate (any scored step wrong).
- ``"digits"``: G softmaxes of 10 per step (logits ``[B, T, 10 G]``, targets ``[B, T, G]``; the DNC
  graph tasks' 9 digits of a triple): the cross-entropy summed over the G digits, mean per scored step.
  The evaluation is by the modal output (the argmax of each softmax): a step is wrong when any of
  its digits is (``error_rate``; ``accuracy = 1 - error_rate``), with the digit error rate beside it.
"""

from __future__ import annotations

import dataclasses
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
from heed.agents.parts import CORES, MODELS, build_model, part_from_dict
from heed.envs.tasks import TASKS, Batch

KIND = "sequence-model"


def sequence_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, kind: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss and detached metrics.

    Args:
        logits: ``[B, T, K]``; targets: ``[B, T, K]`` floats (bits), ``[B, T]`` int64 (classes) or
        ``[B, T, K / 10]`` int64 (digits); mask: ``[B, T]``; kind: ``"bits"``, ``"classes"`` or ``"digits"``.

    Returns:
        ``(loss, metrics)``: for bits ``bits_per_sequence``, ``bit_errors_per_sequence``,
        ``bit_error_rate``; for classes ``cost_per_sequence`` (bits), ``bits_per_step`` (bits per scored step: bpc on text),
        ``error_rate``, ``sequence_error_rate``; for digits the same, plus ``digit_error_rate``.
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
                "bits_per_step": ce.sum().detach() / (scored * math.log(2.0)),  # bits per character on text
                "error_rate": wrong.sum() / scored,
                "sequence_error_rate": (wrong.sum(1) > 0).to(mask.dtype).mean(),
            }
        return loss, metrics
    if kind == "digits":
        digits = logits.reshape(*logits.shape[:-1], -1, 10)  # [B, T, G, 10]
        ce = F.cross_entropy(digits.permute(0, 3, 1, 2), targets, reduction="none").sum(-1) * mask  # [B, T]
        loss = ce.sum() / scored
        with torch.no_grad():
            wrong_digits = (digits.argmax(-1) != targets).to(mask.dtype)  # [B, T, G]
            wrong = (wrong_digits.amax(-1) * mask)  # a step is wrong when any digit is
            metrics = {
                "cost_per_sequence": ce.sum().detach() / (batch * math.log(2.0)),
                "error_rate": wrong.sum() / scored,
                "digit_error_rate": (wrong_digits.sum(-1) * mask).sum() / (scored * targets.shape[-1]),
                "sequence_error_rate": (wrong.sum(1) > 0).to(mask.dtype).mean(),
            }
        return loss, metrics
    raise HeedError(f"unknown loss kind '{kind}': tasks declare 'bits', 'classes' or 'digits'")


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
    if name not in TASKS:
        raise HeedError(f"unknown task '{name}'.{suggest(name, TASKS)} Tasks: {', '.join(sorted(TASKS))}")
    check_options(TASKS[name], options, "task", name)
    try:
        return TASKS[name](**options)
    except (TypeError, ValueError) as exc:
        raise HeedError(f"task '{name}': {exc}") from None


#: model names of checkpoints written before the table of parts that are called otherwise now
_RENAMED = {"act-rnn": "act"}


def model_config_from_meta(meta: dict[str, Any]) -> Any:
    """The model config a checkpoint's meta stores: ``meta["model"]`` (name + fields), or the older
    ``meta["core"]`` name with ``meta["model_options"]`` (the shipped ``ntm-copy`` has that form).

    Either way the config's types and declared ranges are checked before a model is built from it.
    """
    if "model" in meta:
        return part_from_dict(meta["model"], "the checkpoint's model")
    if not isinstance(meta.get("core"), str) or not isinstance(meta.get("model_options", {}), dict):
        raise HeedError("the checkpoint's meta.json names no model ('model', or 'core' with 'model_options')")
    return legacy_model_config(meta["core"], dict(meta.get("model_options", {})))


def legacy_model_config(name: str, options: dict[str, Any]) -> Any:
    """A model config from an old-style name and options, keeping the options the model takes
    (the old builders dropped the others in silence, so the model was built without them)."""
    name = _RENAMED.get(name, name)
    table = {**CORES, **MODELS}
    if name not in table:
        raise HeedError(f"unknown model '{name}'.{suggest(name, table)} Models: {', '.join(table)}")
    fields = {f.name for f in dataclasses.fields(table[name][0]) if f.init}
    return part_from_dict({"name": name, **{k: v for k, v in options.items() if k in fields and v is not None}})


def load_sequence_model(path: str, device: torch.device | str = "cpu"):
    """Rebuild the task and model of a checkpoint (run dir, checkpoint dir or shipped weights).

    Returns:
        ``(model in eval mode, task, checkpoint)``.
    """
    ckpt = load_checkpoint(path, expect_kind=KIND)
    meta = ckpt.meta
    for key, kind in (("task", str), ("task_options", dict)):
        if not isinstance(meta.get(key), kind):
            raise HeedError(f"checkpoint '{ckpt.path}': '{key}' in meta.json is missing or not a {kind.__name__}")
    task = build_task(meta["task"], dict(meta["task_options"]))
    model = build_model(model_config_from_meta(meta), task.input_size, task.output_size)
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


@torch.no_grad()
def feed_back(model: nn.Module, inputs: torch.Tensor, mask: torch.Tensor, beta: float,
              rng: np.random.Generator, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Structured prediction's fed-back answers (Graves et al. 2016, shortest path), for a ``digits`` task.

    The task writes the optimal planner's previous answer into the first K input channels of every
    scored step after the first (K = the model's output size: 9 digits as 10-way one-hots). Here, at
    each such step t of a sequence in ``rows``, with p its previous scored step, that answer is kept
    with probability ``beta`` and otherwise replaced by the model's own modal answer at p:

        x_t[:K] = onehot(argmax_10(y_p))  with probability 1 - beta,  where y_p = model(x_{<=p})_p

    The core is stepped once (no gradient) over the steps that matter, feeding its own answers as it
    goes, so a later own answer follows the inputs actually chosen before it. ``beta = 1`` returns
    ``inputs`` unchanged; ``beta = 0`` feeds back only the model's own answers (the test-time setting).

    Args:
        model: a core with a readout (``model.core``, ``model.readout``); inputs: ``[B, T, D]``;
        mask: ``[B, T]`` (scored steps > 0); beta: in [0, 1]; rng: draws the ``[B, T]`` coin flips
        (once per call when ``0 < beta < 1``); rows: ``[B]`` bools, the sequences that feed back
        (default all).

    Returns:
        the inputs to train on, ``[B, T, D]`` (a new tensor; ``inputs`` is not changed).
    """
    if beta >= 1.0:
        return inputs
    if not hasattr(model, "core") or not hasattr(model, "readout"):
        raise HeedError("fed-back answers with beta < 1 step a recurrent core; this model has none "
                        "(use the task option beta=1)")
    B, T, _ = inputs.shape
    scored = (mask > 0).cpu().numpy()
    scored &= np.ones(B, bool)[:, None] if rows is None else rows.cpu().numpy().astype(bool)[:, None]
    earlier = np.cumsum(scored, axis=1) - scored  # scored steps before t
    coins = rng.random((B, T)) >= beta if beta > 0 else True  # beta = 0 draws nothing
    own = torch.as_tensor(coins & scored & (earlier > 0), device=inputs.device)
    if not bool(own.any()):
        return inputs
    out, last = inputs.clone(), int(torch.nonzero(own.any(0)).max())
    K = model.readout.out_features
    previous = torch.zeros(B, K, device=inputs.device)  # one-hot modal answer of each row's last scored step
    state = model.core.initial_state(B)
    for t in range(last + 1):
        out[:, t, :K] = torch.where(own[:, t, None], previous, out[:, t, :K])
        if t == last:
            break
        hidden, state, _ = model.core(out[:, t], state)
        modal = model.readout(hidden).reshape(B, K // 10, 10).argmax(-1)  # [B, K / 10]
        answer = F.one_hot(modal, 10).reshape(B, K).to(out.dtype)
        previous = torch.where(torch.as_tensor(scored[:, t, None], device=inputs.device), answer, previous)
    return out


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
