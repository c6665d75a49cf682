"""Module and optimizer state to and from plain tensors (what a checkpoint stores)."""

from __future__ import annotations

from typing import Any

import torch

from heed.agents.common.errors import HeedError


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
