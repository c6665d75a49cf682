"""Device selection: ``auto`` resolves once to CUDA when present, else CPU."""

from __future__ import annotations

import torch

from heed.agents.common.errors import HeedError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` to a :class:`torch.device`.

    Raises :class:`HeedError` (one line, no traceback) for an unknown name or an absent device.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise HeedError(f"unknown device '{spec}': use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HeedError(f"--device {spec} was asked for but CUDA is not available here; use --device auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HeedError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HeedError("--device mps was asked for but MPS is not available here")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise HeedError(f"unsupported device '{spec}'")
    return device
