"""Atomic file writing: an artifact is either complete or absent, never half-written.

A folder that cannot be written (read-only, not permitted) or a full disk ends a write with
:class:`~cuneidet.errors.OutputError`, which names the file and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cuneidet.errors import CuneidetError, OutputError

#: errno values of an output folder that may not be written, and of a full disk
_UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_output_error(error: BaseException, disk_full_only: bool = False) -> bool:
    """Whether ``error`` says that the output folder may not be written (not with
    ``disk_full_only``) or that the disk is full."""
    if not isinstance(error, OSError) or isinstance(error, CuneidetError):
        return False
    return error.errno in (_FULL if disk_full_only else _UNWRITABLE | _FULL)


def output_error(path: str | Path, error: OSError) -> OutputError:
    """An :class:`OutputError` for ``error`` (see :func:`is_output_error`) naming ``path`` and
    the fix; raise it ``from error``."""
    if error.errno in _FULL:
        fix = "free disk space or write to another disk, then run again"
    else:
        fix = (
            "choose a writable output folder (e.g. hydra.run.dir=<folder>, output=<file>) "
            "or make this one writable"
        )
    converted = OutputError(f"cannot write {path}: {error.strerror or error}; {fix}")
    converted.errno = error.errno
    return converted


@contextlib.contextmanager
def output_errors(path: str | Path, disk_full_only: bool = False) -> Iterator[None]:
    """Turn a read-only folder or a full disk met inside the block into an
    :class:`OutputError` naming ``path``; other errors pass unchanged."""
    try:
        yield
    except OSError as error:
        if not is_output_error(error, disk_full_only):
            raise
        raise output_error(path, error) from error


def _temporary(path: Path, prefix: str, suffix: str) -> str:
    """A new empty temporary file beside ``path`` (its folder created first), named after this
    machine and process (``<prefix><host>-<pid>-<random><suffix>``); the temporary files of the
    same target left by a process of this machine that no longer runs (killed mid-write: no
    ``except`` ran to remove them) are removed first."""
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path.parent, prefix, suffix)
        fd, name = tempfile.mkstemp(
            dir=path.parent, prefix=f"{prefix}{_HOST}-{os.getpid()}-", suffix=suffix
        )
    with contextlib.suppress(OSError):  # mkstemp's 0600 → the mode a plain open() would give
        os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    return name


#: the process's umask (read once: reading it means setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)
#: a short tag of this machine in temporary file names (a process id means nothing elsewhere)
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _remove_orphans(folder: Path, prefix: str, suffix: str) -> None:
    """Remove ``folder``'s temporary files of ``prefix``/``suffix`` whose writer, a process of
    this machine, has ended (POSIX only; other machines' and older files are left alone)."""
    if os.name != "posix":
        return
    pattern = re.compile(re.escape(f"{prefix}{_HOST}-") + r"(\d+)-[a-z0-9_]{8}" + re.escape(suffix))
    for candidate in folder.glob(f"{glob.escape(prefix)}{_HOST}-*"):
        found = pattern.fullmatch(candidate.name)
        if found and not _running(int(found.group(1))):
            with contextlib.suppress(OSError):
                candidate.unlink()


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def check_writable(path: str | Path) -> Path:
    """Fail early with :class:`OutputError` when ``path`` could not be written (its folder is
    created, and a temporary file made and removed in it); long jobs call this before working."""
    path = Path(path)
    os.unlink(_temporary(path, f".{path.name}.", ".tmp"))
    return path


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    path = Path(path)
    tmp_name = _temporary(path, f".{path.name}.", ".tmp")
    try:
        with (
            output_errors(path, disk_full_only=True),
            open(tmp_name, mode.replace("x", "w"), **kwargs) as handle,
        ):
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        with output_errors(path):
            os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path for writers that want a filename (e.g. ``torch.save``, ``savefig``).

    The temporary file keeps the suffix of ``path`` so format detection by extension works.
    """
    path = Path(path)
    tmp_name = _temporary(path, f".{path.stem}.", path.suffix)
    try:
        with output_errors(path, disk_full_only=True):
            yield Path(tmp_name)
        with output_errors(path):
            os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as standard JSON (atomically): NaN and ±inf become ``null``, which every
    JSON reader accepts (Python's ``NaN`` token is not JSON)."""
    text = json.dumps(_finite(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    return write_text(path, text + "\n")


def write_csv(path: str | Path, frame: Any, **kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, **kwargs)
    return Path(path)


def _finite(value: Any) -> Any:
    """``value`` with containers walked, scalars made plain and non-finite floats ``None``."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return _finite(_jsonable(value))


def _jsonable(value: Any) -> Any:
    if getattr(value, "ndim", 0) and hasattr(value, "tolist"):  # numpy / torch arrays
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")
