"""Where a result came from: the command line, the git commit and the hardware of a run."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from cuneidet.utils.io import write_text

log = logging.getLogger("cuneidet")


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
    """The command that started this process, as a person would type it."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def save_config(cfg: DictConfig, output_dir: str | Path) -> None:
    """Save the resolved config tree beside the run (Hydra keeps the unresolved one)."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    write_text(Path(output_dir) / "config_resolved.yaml", text)
    log.debug("config:\n%s", text)
