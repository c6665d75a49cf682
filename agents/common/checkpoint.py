"""Safe checkpoints: safetensors weights plus JSON, written atomically, never unpickled.

A checkpoint is a directory::

    <dir>/weights.safetensors     model tensors (any dtype; fp16 for shipped agents)
    <dir>/optimizer.safetensors   optional: optimizer state tensors (flattened, see below)
    <dir>/meta.json               the meta schema below

The meta schema (:func:`checkpoint_meta`)::

    {"format": "heed-checkpoint", "version": 2, "kind": "ppo", "run_id": "...", "step": 1200,
     "config": {... the part's / trainer's config ...}, "counters": {...}, "optimizer": {...}, ...}

Files written before the schema (no ``format``) still load as version 1. A training run keeps
``<run_dir>/checkpoints/step_<N>/`` and a ``latest`` text file naming the newest.

The one writer, :func:`save_checkpoint`, never deletes what it did not create: it refuses a target
that exists and is not a heed checkpoint (a run folder, any other folder, a file); it writes into a
fresh temporary sibling, fsyncs every file, renames it into place and removes its own temporary on
any failure; disk-full and read-only errors become one line; non-finite tensors are refused.
:func:`save_run_checkpoint` prunes only ``step_*`` checkpoints of the same run id.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from heed.agents.common.errors import HeedError
from heed.agents.common.guards import NonFiniteError, first_nonfinite
from heed.agents.common.safe_io import (
    check_regular_file,
    disk_errors,
    fsync_dir,
    read_bytes_capped,
    read_json_object,
    write_bytes_atomic,
    write_bytes_durable,
    write_json_atomic,
)
from heed.agents.common.state import flatten_optimizer, load_module_state, restore_optimizer

__all__ = [
    "WEIGHTS", "OPTIMIZER", "META", "FORMAT", "FORMAT_VERSION", "Checkpoint", "CorruptCheckpointError",
    "checkpoint_meta", "is_checkpoint_dir", "save_checkpoint", "save_run_checkpoint", "latest_checkpoint",
    "load_checkpoint", "load_latest_checkpoint", "resolve_checkpoint_dir", "load_module_state",
    "flatten_optimizer", "restore_optimizer", "write_json_atomic",
]

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
META = "meta.json"
FORMAT = "heed-checkpoint"
FORMAT_VERSION = 2
_OWN_FILES = (WEIGHTS, OPTIMIZER, META)
_STEP_DIR = re.compile(r"step_(\d{1,20})")
_MARKER_BYTES = 64


class CorruptCheckpointError(HeedError):
    """A checkpoint folder whose files are damaged (a loader may fall back to an older one)."""


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

    @property
    def run_id(self) -> str | None:
        return self.meta.get("run_id")

    @property
    def step(self) -> int | None:
        """The training step the checkpoint holds (``None`` for files older than the schema)."""
        step = self.meta.get("step")
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 1)) if self.meta.get("format") == FORMAT else 1


def checkpoint_meta(
    kind: str,
    config: dict[str, Any],
    counters: dict[str, Any] | None = None,
    step: int | None = None,
    run_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The one checkpoint meta schema: format, version, kind, run id, step, config, counters (+ ``extra``)."""
    meta: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "config": dict(config),
                            "counters": dict(counters or {})}
    if step is not None:
        meta["step"] = int(step)
    if run_id is not None:
        meta["run_id"] = run_id
    meta.update(extra)
    return meta


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a heed checkpoint (weights plus a readable meta object)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir() or not (path / WEIGHTS).is_file():
        return False
    try:
        meta = read_json_object(path / META, "checkpoint meta", root=path)
    except HeedError:
        return False
    return isinstance(meta.get("kind"), str)


def _refuse_foreign_target(directory: Path) -> None:
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise HeedError(f"refusing to write a checkpoint to '{directory}': it exists and is not a folder "
                        "(nothing was changed; choose another path)")
    if directory.is_dir() and any(directory.iterdir()) and not is_checkpoint_dir(directory):
        raise HeedError(f"refusing to write a checkpoint into '{directory}': it holds files that are not a heed "
                        "checkpoint (nothing was changed; choose a new or empty folder)")


def _place(tmp: Path, directory: Path) -> None:
    """Rename ``tmp`` to ``directory``; an existing checkpoint there is replaced, its other files kept."""
    if not directory.exists():
        os.replace(tmp, directory)
        return
    if not any(directory.iterdir()):
        os.rmdir(directory)
        os.replace(tmp, directory)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
    os.rmdir(old)
    os.replace(directory, old)
    os.replace(tmp, directory)
    for item in old.iterdir():  # files that someone put beside the checkpoint (README, curves) stay
        if item.name not in _OWN_FILES:
            os.replace(item, directory / item.name)
    _remove_checkpoint_files(old)


def _remove_checkpoint_files(directory: Path) -> None:
    """Delete the files a checkpoint write makes (weights, optimizer, meta and its temporary) in
    ``directory``, then the folder if that left it empty. Anything else in it (a user's file, a
    subfolder) is never touched, and the folder then stays."""
    temporaries = [p.name for p in directory.glob(f".{META}.*.tmp")]  # write_json_atomic's, if cut short
    for name in (*_OWN_FILES, *temporaries):
        item = directory / name
        if item.is_symlink() or item.is_file():
            item.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


def claim_export_dir(directory: str | os.PathLike, overwrite: bool, flag: str = "--export") -> Path:
    """An export target for a command that ships a model (``--export``, ``--out``): a new or empty folder,
    or, only with ``--overwrite``, one already holding a heed checkpoint, whose weights and meta are then
    replaced (other files in it stay: :func:`save_checkpoint`). Anything else is refused there."""
    directory = Path(directory)
    if not overwrite and not directory.is_symlink() and directory.is_dir() and any(
            (directory / name).exists() for name in _OWN_FILES):
        raise HeedError(f"refusing {flag} '{directory}': it already holds a checkpoint this command did not "
                        "write (nothing was changed; choose a new folder, or pass --overwrite to replace its "
                        "weights and meta.json, other files there stay)")
    return directory


def save_checkpoint(
    directory: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``tensors`` is usually ``module.state_dict()``; ``meta`` must be JSON-serialisable and should come
    from :func:`checkpoint_meta`. An existing heed checkpoint at ``directory`` is replaced (files
    beside it that are not checkpoint files are kept); anything else there is refused with one line.
    Raises :class:`NonFiniteError` (nothing written) when a tensor holds NaN or ±inf.
    """
    directory = Path(directory)
    _refuse_foreign_target(directory)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = dict(meta)
    opt_tensors = None
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = flatten_optimizer(optimizer)
    bad = first_nonfinite(weights) or (first_nonfinite(opt_tensors) if opt_tensors else None)
    if bad is not None:
        raise NonFiniteError(f"refusing to save a checkpoint to '{directory}': {bad} holds NaN or inf "
                             "(the previous checkpoint is kept)")
    tmp: Path | None = None
    with disk_errors(directory, " (the previous checkpoint, if any, is kept)"):
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{directory.name}.", suffix=".tmp", dir=directory.parent))
            write_bytes_durable(tmp / WEIGHTS, safetensors_bytes(weights))
            if opt_tensors is not None:
                write_bytes_durable(tmp / OPTIMIZER, safetensors_bytes(opt_tensors))
            write_json_atomic(tmp / META, meta)
            fsync_dir(tmp)
            _place(tmp, directory)
            tmp = None
            fsync_dir(directory.parent)
        finally:
            if tmp is not None:
                _remove_checkpoint_files(tmp)
    return directory


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Accept a checkpoint dir, a run dir (takes its latest checkpoint) or a ``weights.safetensors`` file."""
    path = Path(path)
    if not path.exists():
        raise HeedError(f"no checkpoint at '{path}': the path does not exist")
    if not path.is_dir():
        if path.is_file() and path.name in (WEIGHTS, META):
            return path.parent
        raise HeedError(f"'{path}' is not a heed checkpoint: expected a directory holding {WEIGHTS} and {META}")
    if (path / WEIGHTS).exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise HeedError(f"no checkpoint at '{path}': it holds no {WEIGHTS} and no checkpoints/latest")
    return latest


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.fullmatch(path.name)
    return int(match.group(1)) if match else None


def read_latest_marker(ckpts: str | os.PathLike) -> Path | None:
    """The checkpoint ``<ckpts>/latest`` names, or ``None`` when the marker is absent or invalid.

    Valid: a small regular text file holding ``step_<N>`` and nothing else, naming a folder directly
    inside ``ckpts`` (``../../x``, absolute paths, symlinks out and binary content are ignored).
    """
    ckpts = Path(ckpts)
    try:
        text = read_bytes_capped(ckpts / "latest", _MARKER_BYTES, "checkpoint marker", root=ckpts).decode("ascii")
    except (HeedError, UnicodeDecodeError):
        return None
    name = text.strip()
    if not _STEP_DIR.fullmatch(name):
        return None
    candidate = ckpts / name
    if candidate.is_symlink() or not candidate.is_dir():
        return None
    return candidate


def _step_dirs(ckpts: Path) -> list[Path]:
    """``step_<N>`` folders (complete: weights and meta files present), newest first."""
    if not ckpts.is_dir():
        return []
    found = [p for p in ckpts.iterdir() if _step_of(p) is not None and not p.is_symlink() and p.is_dir()
             and (p / WEIGHTS).is_file() and (p / META).is_file()]
    return sorted(found, key=lambda p: _step_of(p) or 0, reverse=True)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of a run, or ``None`` when the run has none yet.

    The ``latest`` marker is checked (:func:`read_latest_marker`) but a complete ``step_<N>`` with a
    larger N wins (a run killed between the rename and the marker update).
    """
    ckpts = Path(run_dir) / "checkpoints"
    steps = _step_dirs(ckpts)
    marked = read_latest_marker(ckpts)
    if marked is not None and marked in steps:
        return steps[0] if (_step_of(steps[0]) or 0) > (_step_of(marked) or 0) else marked
    return steps[0] if steps else None


def _run_id_of(path: Path) -> str | None:
    try:
        return read_json_object(path / META, "checkpoint meta", root=path).get("run_id")
    except HeedError:
        return None


def save_run_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    keep: int = 2,
) -> Path:
    """Save ``<run_dir>/checkpoints/step_<step>``, point ``latest`` at it, keep this run's newest ``keep``.

    ``meta["step"]`` is set to ``step``. Pruning removes only ``step_*`` checkpoints whose meta carries
    the same ``run_id`` (checkpoints of another run, and folders heed did not write, stay), and the
    leftover temporaries of earlier killed writes of this folder. Non-finite tensors are refused
    before anything is touched, so the newest checkpoint kept is always a finite one.
    """
    ckpts = Path(run_dir) / "checkpoints"
    meta = dict(meta, step=int(step))
    path = save_checkpoint(ckpts / f"step_{step:010d}", tensors, meta, optimizer)
    with disk_errors(ckpts / "latest", " (the checkpoint itself was written)"):
        write_bytes_atomic(ckpts / "latest", path.name.encode("ascii"))
    run_id = meta.get("run_id")
    if run_id is None:  # without a run id no checkpoint can be proven this run's own: prune nothing
        return path
    ours = [p for p in _step_dirs(ckpts) if _run_id_of(p) == run_id]
    for old in ours[max(keep, 1):]:
        if old != path:
            _remove_checkpoint_files(old)
    for stale in ckpts.glob("step_*.tmp"):  # partial writes of a killed process (mkdtemp names)
        if stale.is_dir() and not stale.is_symlink():
            _remove_checkpoint_files(stale)
    return path


def _validate_meta(meta: dict[str, Any], directory: Path) -> None:
    if meta.get("format") == FORMAT:
        version = meta.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CorruptCheckpointError(f"checkpoint '{directory}' is corrupt: bad format version {version!r}")
        if version > FORMAT_VERSION:
            raise HeedError(f"checkpoint '{directory}' has format version {version}; this heed reads up to "
                            f"{FORMAT_VERSION} (upgrade heed)")
    for key, kind in (("kind", str), ("config", dict), ("counters", dict), ("run_id", str), ("optimizer", dict)):
        if key in meta and meta[key] is not None and not isinstance(meta[key], kind):
            raise CorruptCheckpointError(f"checkpoint '{directory}' is corrupt: '{key}' in {META} is not a {kind.__name__}")


def load_checkpoint(path: str | os.PathLike, expect_kind: str | tuple[str, ...] | None = None) -> Checkpoint:
    """Load a checkpoint safely (safetensors + JSON only) with one-line errors for bad files.

    ``expect_kind`` rejects a checkpoint of another architecture with a clear message. Damaged files
    raise :class:`CorruptCheckpointError`; a FIFO, folder or symlink out of the checkpoint in place of
    a file is refused without blocking.
    """
    directory = resolve_checkpoint_dir(path)
    try:
        meta = read_json_object(directory / META, "checkpoint meta", root=directory)
    except HeedError as exc:
        raise CorruptCheckpointError(f"checkpoint '{directory}' is unreadable: {exc}") from None
    _validate_meta(meta, directory)
    if expect_kind is not None:
        kinds = (expect_kind,) if isinstance(expect_kind, str) else tuple(expect_kind)
        if meta.get("kind") not in kinds:
            raise HeedError(
                f"checkpoint '{directory}' holds a '{meta.get('kind')}' model, not {' or '.join(kinds)}"
            )
    try:
        tensors = _load_tensors(directory / WEIGHTS, directory)
        opt = _load_tensors(directory / OPTIMIZER, directory) if (directory / OPTIMIZER).exists() else None
    except (SafetensorError, OSError, ValueError, HeedError) as exc:
        raise CorruptCheckpointError(f"checkpoint '{directory}' is corrupt or not a safetensors file ({exc})") from None
    return Checkpoint(path=directory, tensors=tensors, meta=meta, optimizer_tensors=opt)


def _load_tensors(path: Path, root: Path) -> dict[str, torch.Tensor]:
    check_regular_file(path, root, "tensor file")  # a regular file inside the checkpoint: never a FIFO
    return load_file(str(path))


def load_latest_checkpoint(
    run_dir: str | os.PathLike,
    expect_kind: str | tuple[str, ...] | None = None,
    run_id: str | None = None,
) -> Checkpoint | None:
    """The newest checkpoint of a run that loads, falling back past corrupt ones (one warning each).

    ``run_id`` (when given) skips checkpoints of another run. ``None`` when the run has no checkpoint;
    a kind mismatch is an error (it is another run's folder, not damage).
    """
    ckpts = Path(run_dir) / "checkpoints"
    first = latest_checkpoint(run_dir)
    candidates = _step_dirs(ckpts)
    if first is not None and first in candidates:
        candidates.remove(first)
        candidates.insert(0, first)
    for candidate in candidates:
        try:
            loaded = load_checkpoint(candidate, expect_kind)
        except CorruptCheckpointError as exc:
            print(f"warning: {exc}; trying an older checkpoint", file=sys.stderr)
            continue
        if run_id is not None and loaded.run_id not in (None, run_id):
            continue
        return loaded
    return None
