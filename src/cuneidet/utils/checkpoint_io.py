"""Checkpoints written beside their file and renamed into place.

Lightning's ``TorchCheckpointIO`` writes a checkpoint through an fsspec transaction, which stages
it in a temporary file of ``$TMPDIR`` and then moves it onto ``last.ckpt``/``best.ckpt``. A run
killed while saving leaves that temporary file (the size of a checkpoint) in ``$TMPDIR``, and
where ``$TMPDIR`` is another file system (a tmpfs ``/tmp``) the move is a copy, so a kill during
it leaves a truncated checkpoint that the resumed run cannot load. :class:`AtomicCheckpointIO`
writes to a temporary file in the checkpoint's own folder and renames it
(:func:`cuneidet.utils.io.atomic_path`): the checkpoint is the old one or the new one, and the
next save removes what a killed writer left there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from cuneidet.utils.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with a local, atomic save (remote URLs keep Lightning's)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_path(Path(path)) as temporary:
            torch.save(checkpoint, temporary)


__all__ = ["AtomicCheckpointIO"]
