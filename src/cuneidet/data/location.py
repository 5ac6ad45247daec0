"""Find the data directory (the folder that holds ``csdd/``) without hard-coding a path.

Resolution order (first hit wins):

1. an explicit value, usually the ``data.data_dir`` config key;
2. the environment variable :data:`ENV_VAR` (``CUNEIDET_DATA_DIR``);
3. the default ``../shared/data``, relative to the current working directory and then to the
   repository root (the folder holding ``pyproject.toml``).

An explicit value or environment variable that points at a missing or incomplete folder is an
error: it never silently falls back to the default.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cuneidet.errors import DataNotFoundError

log = logging.getLogger(__name__)

ENV_VAR = "CUNEIDET_DATA_DIR"
DEFAULT_RELATIVE = Path("..") / "shared" / "data"
CSDD_SUBDIR = "csdd"
CSDD_REPOSITORY = "https://github.com/compvis/cuneiform-sign-detection-dataset"

_HOW_TO_GET_DATA = (
    "To get the data: clone the public CSDD metadata repository "
    f"({CSDD_REPOSITORY}) into <dir>/{CSDD_SUBDIR}, put the tablet photographs "
    f"(<tablet_CDLI>.jpg) into <dir>/{CSDD_SUBDIR}/images/ (or download them with the CDLI "
    f"source), then set the environment variable {ENV_VAR}=<dir> or pass data.data_dir=<dir>."
)


def repo_root() -> Path | None:
    """The repository root (nearest parent of this file holding ``pyproject.toml``), if any.

    ``None`` for an installed wheel, where the package does not live inside the repository.
    """
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def is_data_dir(path: Path) -> bool:
    """Whether ``path`` looks like a data directory (it has a ``csdd/`` subfolder)."""
    return (path / CSDD_SUBDIR).is_dir()


def resolve_data_dir(configured: str | Path | None = None) -> Path:
    """Return the absolute data directory; see the module docstring for the search order.

    ``configured`` may be ``None`` or an empty string (not configured). Raises
    :class:`~cuneidet.errors.DataNotFoundError` naming the places tried and how to get the data.
    """
    if configured is not None and str(configured).strip():
        return _check_given(Path(configured), "the configured data.data_dir")
    env_value = os.environ.get(ENV_VAR, "").strip()
    if env_value:
        return _check_given(Path(env_value), f"the environment variable {ENV_VAR}")
    return _search_defaults()


def _default_candidates() -> list[Path]:
    bases = [Path.cwd()]
    root = repo_root()
    if root is not None:
        bases.append(root)
    candidates: list[Path] = []
    for base in bases:
        candidate = (base / DEFAULT_RELATIVE).resolve()
        if candidate not in candidates:
            candidates.append(candidate)
    return candidates


def _search_defaults() -> Path:
    tried: list[str] = []
    for candidate in _default_candidates():
        if is_data_dir(candidate):
            log.debug("data directory: %s (default location)", candidate)
            return candidate
        tried.append(f"  - {candidate} ({_why_not(candidate)})")
    raise DataNotFoundError(
        "No data directory found. Tried, in order:\n"
        f"  - data.data_dir (not configured)\n"
        f"  - environment variable {ENV_VAR} (not set)\n"
        + "\n".join(tried)
        + "\n"
        + _HOW_TO_GET_DATA
    )


def _check_given(path: Path, origin: str) -> Path:
    path = path.expanduser().resolve()
    if not is_data_dir(path):
        raise DataNotFoundError(_given_problem(path, origin) + "\n" + _HOW_TO_GET_DATA)
    log.debug("data directory: %s (from %s)", path, origin)
    return path


def _given_problem(path: Path, origin: str) -> str:
    message = f"The data directory {path} (from {origin}) {_why_not(path)}."
    if path.name == CSDD_SUBDIR or (path / "segments").is_dir():
        message += (
            f" It looks like the {CSDD_SUBDIR} folder itself: point at its parent "
            f"({path.parent}) instead."
        )
    return message


def _why_not(path: Path) -> str:
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "is not a directory"
    return f"exists but has no {CSDD_SUBDIR}/ subfolder"
