"""Reading a checkpoint file: a damaged or foreign one is an error that names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cuneidet.errors import ModelFileError


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """The dictionary ``torch.save`` wrote to ``path``; a truncated, damaged or foreign file is a
    :class:`ModelFileError` naming it (torch raises many kinds of errors for those)."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # RuntimeError, EOFError, UnpicklingError, ...
        first = str(error).splitlines()[0] if str(error) else ""
        raise ModelFileError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {first}); it is "
            "truncated or not a PyTorch file: copy it again or use the best.ckpt / last.ckpt "
            "of a finished cuneidet-train run"
        ) from error
    if not isinstance(checkpoint, dict):
        raise ModelFileError(
            f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary; use the "
            "best.ckpt / last.ckpt of a cuneidet-train run"
        )
    return checkpoint


__all__ = ["read_checkpoint"]
