"""Shared pieces of the Hydra entry points: task wrapper, config printing, run summaries."""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cuneidet.errors import CuneidetError
from cuneidet.utils.io import write_text
from cuneidet.utils.loggers import finish_wandb

log = logging.getLogger("cuneidet")


def task_wrapper(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run a task; a cuneidet input/config error ends with its message (exit 2), not a traceback.

    W&B is always closed so the next job of a multirun starts a fresh run.
    """

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except CuneidetError as error:
            log.error("%s", error)
            sys.exit(2)
        finally:
            finish_wandb()
            log.info("output dir: %s", cfg.paths.output_dir)

    return wrapped


def save_config(cfg: DictConfig, output_dir: str | Path) -> None:
    """Save the resolved config tree beside the run (Hydra keeps the unresolved one)."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    write_text(Path(output_dir) / "config_resolved.yaml", text)
    log.debug("config:\n%s", text)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit() -> str | None:
    """The current commit of the working tree, ``<hash>-dirty`` when tracked files differ from
    it (the figures then came from code no commit holds); None outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if changed else commit


def hardware_description() -> str:
    """e.g. 'cpu: x86_64, 2 threads' or 'cuda: NVIDIA H100 80GB HBM3 x1'."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"cuda: {name} x{torch.cuda.device_count()}"
    return f"cpu: {platform.machine()} {platform.processor() or ''}".strip() + (
        f", {torch.get_num_threads()} threads"
    )


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
