"""Safe checkpoints: safetensors weights plus JSON, written atomically, never unpickled.

A checkpoint is a directory::

    <dir>/weights.safetensors     model tensors (any dtype; fp16 for shipped agents)
    <dir>/optimizer.safetensors   optional: optimizer state tensors (flattened, see below)
    <dir>/meta.json               {"kind": ..., "config": {...}, "counters": {...}, "optimizer": {...}}

A training run keeps ``<run_dir>/checkpoints/step_<N>/`` directories and a ``latest`` text file
naming the newest. Every write goes to a temporary sibling first and is renamed into place, so an
interrupted write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from heed.agents.common.errors import HeedError

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
META = "meta.json"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    optimizer_tensors: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "unknown"))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("config", {}))

    @property
    def counters(self) -> dict[str, Any]:
        return dict(self.meta.get("counters", {}))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def save_checkpoint(
    directory: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``tensors`` is usually ``module.state_dict()``; ``meta`` must be JSON-serialisable and should
    hold ``kind`` (architecture name), ``config`` and ``counters``.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    meta = dict(meta)
    save_file(_contiguous(tensors), str(tmp / WEIGHTS))
    if optimizer is not None:
        opt_tensors, opt_meta = flatten_optimizer(optimizer)
        save_file(opt_tensors, str(tmp / OPTIMIZER))
        meta["optimizer"] = opt_meta
    write_json_atomic(tmp / META, meta)
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:
        os.replace(tmp, directory)
    return directory


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Accept a checkpoint dir, a run dir (takes its latest checkpoint) or a ``weights.safetensors`` file."""
    path = Path(path)
    if not path.exists():
        raise HeedError(f"no checkpoint at '{path}': the path does not exist")
    if path.is_file():
        if path.name in (WEIGHTS, META):
            return path.parent
        raise HeedError(f"'{path}' is not a heed checkpoint: expected a directory holding {WEIGHTS} and {META}")
    if (path / WEIGHTS).exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise HeedError(f"no checkpoint at '{path}': it holds no {WEIGHTS} and no checkpoints/latest")
    return latest


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint directory of a run, or ``None`` when the run has none yet."""
    ckpts = Path(run_dir) / "checkpoints"
    marker = ckpts / "latest"
    if marker.exists():
        candidate = ckpts / marker.read_text().strip()
        if (candidate / WEIGHTS).exists():
            return candidate
    steps = sorted(p for p in ckpts.glob("step_*") if (p / WEIGHTS).exists() and not p.name.endswith((".tmp", ".old")))
    return steps[-1] if steps else None


def save_run_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    keep: int = 2,
) -> Path:
    """Save ``<run_dir>/checkpoints/step_<step>``, point ``latest`` at it, keep the newest ``keep``."""
    ckpts = Path(run_dir) / "checkpoints"
    path = save_checkpoint(ckpts / f"step_{step:010d}", tensors, meta, optimizer)
    tmp = ckpts / "latest.tmp"
    tmp.write_text(path.name)
    os.replace(tmp, ckpts / "latest")
    old = sorted(p for p in ckpts.glob("step_*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    return path


def load_checkpoint(path: str | os.PathLike, expect_kind: str | tuple[str, ...] | None = None) -> Checkpoint:
    """Load a checkpoint safely (safetensors + JSON only) with one-line errors for bad files.

    ``expect_kind`` rejects a checkpoint of another architecture with a clear message.
    """
    directory = resolve_checkpoint_dir(path)
    try:
        meta = json.loads((directory / META).read_text())
    except FileNotFoundError:
        raise HeedError(f"checkpoint '{directory}' has no {META}") from None
    except json.JSONDecodeError as exc:
        raise HeedError(f"checkpoint '{directory}' is corrupt: {META} is not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise HeedError(f"checkpoint '{directory}' is corrupt: {META} is not a JSON object")
    if expect_kind is not None:
        kinds = (expect_kind,) if isinstance(expect_kind, str) else tuple(expect_kind)
        if meta.get("kind") not in kinds:
            raise HeedError(
                f"checkpoint '{directory}' holds a '{meta.get('kind')}' model, not {' or '.join(kinds)}"
            )
    try:
        tensors = load_file(str(directory / WEIGHTS))
        opt = load_file(str(directory / OPTIMIZER)) if (directory / OPTIMIZER).exists() else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise HeedError(f"checkpoint '{directory}' is corrupt or not a safetensors file ({exc})") from None
    return Checkpoint(path=directory, tensors=tensors, meta=meta, optimizer_tensors=opt)


def load_module_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str = "") -> None:
    """``module.load_state_dict`` with a one-line error when the architecture does not match."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}")
        if unexpected:
            detail.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            detail.append(f"shape of {k} is {tuple(tensors[k].shape)}, model wants {tuple(own[k].shape)}")
        raise HeedError(f"checkpoint {where} does not fit this architecture: {'; '.join(detail)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and JSON-ready scalars."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    if not tensors:  # safetensors refuses an empty file
        tensors["__empty__"] = torch.zeros(1)
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key == "__empty__":
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
