"""Careful file I/O for run folders: one safe JSON reader and atomic, fsynced writes.

Every file heed reads back from a run or checkpoint folder (``meta.json``, ``config.json``,
``run.json``, the ``latest`` marker) may have been damaged or crafted. :func:`read_json_object`
refuses anything but a small regular UTF-8 file holding a JSON object of bounded nesting, and
never blocks (a named pipe is refused before it is opened for reading). Writes go to a temporary
sibling, are fsynced, then renamed into place; disk-full and read-only errors become one
:class:`HeedError` line (see :func:`disk_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from heed.agents.common.errors import HeedError
from heed.envs.errors import check_regular_file

#: default size cap of a JSON file read back from a run (meta.json with optimizer scalars stays far below)
MAX_JSON_BYTES = 8 * 1024 * 1024
#: default nesting cap: heed's own files nest a handful of levels
MAX_JSON_DEPTH = 64

# errors a user can cause by the place they point heed at (full, read-only, no permission, quota)
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.ENOTDIR}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def read_bytes_capped(path: str | os.PathLike, max_bytes: int, what: str = "file", root: str | os.PathLike | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (inside ``root`` when given), or one HeedError."""
    path = Path(path)
    check_regular_file(path, Path(root) if root is not None else None, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise HeedError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())  # re-check the opened file: it may have been swapped since stat
        if not stat.S_ISREG(info.st_mode):
            raise HeedError(f"{what} '{path}' is not a regular file; refusing to read it")
        if info.st_size > max_bytes:
            raise HeedError(f"{what} '{path}' is {info.st_size:,} bytes, more than the {max_bytes:,} allowed")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HeedError(f"{what} '{path}' is larger than the {max_bytes:,} bytes allowed")
    return data


def json_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text (brackets inside strings ignored); O(len(text))."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read_json_object(
    path: str | os.PathLike,
    what: str = "file",
    root: str | os.PathLike | None = None,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> dict[str, Any]:
    """Read a JSON object from a file a user may have crafted; every failure is one :class:`HeedError`.

    Checks, in order: a regular file (not a folder, FIFO or device; a symlink must stay inside
    ``root``), at most ``max_bytes``, UTF-8, nesting at most ``max_depth``, valid JSON, an object.
    ``NaN``/``Infinity`` literals parse (counters such as a best return of ``-inf`` use them); range
    checks belong to :func:`heed.agents.common.validate.config_from_dict`.
    """
    data = read_bytes_capped(path, max_bytes, what, root)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeedError(f"{what} '{path}' is not UTF-8 text (byte {exc.start})") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise HeedError(f"{what} '{path}' nests {depth} levels deep, more than the {max_depth} allowed")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise HeedError(f"{what} '{path}' is not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(obj, dict):
        raise HeedError(f"{what} '{path}' does not hold a JSON object")
    return obj


def disk_error_line(exc: OSError, target: str | os.PathLike) -> str | None:
    """One line for an OSError the user's disk caused (full, read-only, permission), else ``None``."""
    if exc.errno not in _DISK_ERRNOS:
        return None
    reason = exc.strerror or os.strerror(exc.errno or 0)
    return f"cannot write '{target}': {reason}"


@contextlib.contextmanager
def disk_errors(target: str | os.PathLike, note: str = "") -> Iterator[None]:
    """Turn a disk-full / read-only / permission ``OSError`` inside the block into one HeedError line."""
    try:
        yield
    except OSError as exc:
        line = disk_error_line(exc, target)
        if line is None:
            raise
        raise HeedError(line + note) from None


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that renames inside it survive a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_durable(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (a fresh file) and fsync it before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a fsynced temporary sibling and a rename.

    The temporary file gets a fresh name (``.NAME.XXXX.tmp``, created exclusively), so no file of
    the user's is ever written over or removed; on any failure it is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically (fsynced, then renamed)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    write_bytes_atomic(path, text.encode("utf-8"))


#: the file in an output folder that lists the outputs heed wrote there (so a re-run may replace them)
OUTPUTS_MANIFEST = ".heed-outputs.json"


def check_file_name(name: str, flag: str) -> str:
    """``name`` if it is one plain file name (no folder part, no ``..``), else one HeedError line."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name == OUTPUTS_MANIFEST:
        raise HeedError(f"{flag} must give a plain file name (no folders, no '..'), got '{name}'")
    return name


class OutputFolder:
    """A folder a command writes its named outputs into, never replacing a file that heed did not write.

    Every output is claimed by name (:meth:`claim`) before any work that would be lost on refusal:
    the name must be a plain file name (``--prefix ../../x`` is refused), and an existing file of
    that name is replaced only when heed wrote it (it is listed in the folder's
    :data:`OUTPUTS_MANIFEST`) or ``overwrite`` is true (the command's ``--overwrite``). Other files in
    the folder are never touched. The folder is created when missing; a path that is a file, or a
    folder that cannot be created (read-only disk, permission), is one line.
    """

    def __init__(self, root: str | os.PathLike, overwrite: bool = False, flag: str = "--out-dir") -> None:
        self.root, self.overwrite, self.flag = Path(root), overwrite, flag
        if self.root.exists() and not self.root.is_dir():
            raise HeedError(f"{flag} '{self.root}' exists and is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, no permission, a file on the way, a path the system will not make
            raise HeedError(f"cannot create {flag} '{self.root}': {exc.strerror or exc}") from None
        self._ours = self._read_manifest()

    def _read_manifest(self) -> set[str]:
        path = self.root / OUTPUTS_MANIFEST
        if not path.exists() and not path.is_symlink():
            return set()
        try:
            names = read_json_object(path, "output manifest", root=self.root, max_bytes=1024 * 1024).get("files", [])
        except HeedError:
            return set()  # a damaged manifest vouches for nothing: existing files then need --overwrite
        return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()

    def claim(self, name: str, flag: str | None = None) -> Path:
        """The path of output ``name`` inside the folder, recorded as heed's (see the class docstring)."""
        check_file_name(name, flag or self.flag)
        path = self.root / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise HeedError(f"'{path}' exists and is not a regular file; refusing to write over it")
        if path.exists() and name not in self._ours and not self.overwrite:
            raise HeedError(f"'{path}' exists and was not written by heed; refusing to replace it "
                            "(choose another output path, or pass --overwrite)")
        if name not in self._ours:
            self._ours.add(name)
            self._save_manifest()
        return path

    def adopt(self, name: str) -> Path:
        """Record ``name``, a file heed has just created here under a name it did not choose (a
        TensorBoard event file), as heed's, so that a later run of the command may replace it."""
        check_file_name(name, self.flag)
        if name not in self._ours:
            self._ours.add(name)
            self._save_manifest()
        return self.root / name

    def remove_ours(self, pattern: str) -> list[str]:
        """Delete the regular files heed wrote here whose names match the shell ``pattern``; return them.

        Files heed did not write are never touched, whatever their names.
        """
        import fnmatch

        gone = sorted(n for n in self._ours if fnmatch.fnmatchcase(n, pattern))
        for name in gone:
            path = self.root / name
            if path.is_file() and not path.is_symlink():
                with disk_errors(path):
                    path.unlink()
            self._ours.discard(name)
        if gone:
            self._save_manifest()
        return gone

    def _save_manifest(self) -> None:
        with disk_errors(self.root):
            write_json_atomic(self.root / OUTPUTS_MANIFEST, {"files": sorted(self._ours)})


def claim_output_file(path: str | os.PathLike, overwrite: bool = False, flag: str = "--out") -> Path:
    """One output file (``--json-out``, ``--out``) under the rules of :class:`OutputFolder`."""
    path = Path(path)
    return OutputFolder(path.parent, overwrite, flag).claim(path.name, flag)
