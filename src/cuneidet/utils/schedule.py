"""A learning-rate schedule over a training budget: linear warm-up, then cosine decay.

CPU recipes stop on ``trainer.max_time``: an epoch-based cosine would stop half way down when
the machine is slower than expected. :class:`BudgetCosineSchedule` follows the training's
progress instead: the larger of elapsed training time / ``max_time`` (Lightning's ``Timer``,
which survives a resume) and steps done / steps planned (``max_epochs`` × batches per epoch).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer

from cuneidet.errors import ConfigError


def cosine_factor(progress: float, warmup: float, floor: float) -> float:
    """LR multiplier at ``progress`` in [0, 1]: linear warm-up over ``warmup``, cosine to
    ``floor``."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    span = (progress - warmup) / max(1.0 - warmup, 1e-9)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * span))


class BudgetCosineSchedule(pl.Callback):
    """Sets every parameter group's lr to its initial lr × :func:`cosine_factor` before each
    training batch; logs ``train/lr``."""

    def __init__(self, warmup: float = 0.03, floor: float = 0.02) -> None:
        if not 0.0 <= warmup < 1.0 or not 0.0 <= floor <= 1.0:
            raise ConfigError(
                f"warmup must be in [0, 1) and floor in [0, 1], got {warmup}, {floor}"
            )
        self.warmup = warmup
        self.floor = floor
        self.base_lrs: list[float] | None = None

    def progress(self, trainer: pl.Trainer) -> float:
        """Fraction of the budget used: time and planned steps, whichever is further."""
        done = []
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and timer._duration:
            done.append(timer.time_elapsed() / timer._duration)
        per_epoch = trainer.num_training_batches
        if trainer.max_epochs and trainer.max_epochs > 0 and per_epoch not in (0, float("inf")):
            steps = trainer.max_epochs * per_epoch / max(1, trainer.accumulate_grad_batches)
            done.append(trainer.global_step / steps)
        if trainer.max_steps and trainer.max_steps > 0:
            done.append(trainer.global_step / trainer.max_steps)
        return max(done, default=0.0)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        optimizer = trainer.optimizers[0]
        if self.base_lrs is None:
            self.base_lrs = [
                group.get("initial_lr", group["lr"]) for group in optimizer.param_groups
            ]
            for group, lr in zip(optimizer.param_groups, self.base_lrs, strict=True):
                group["initial_lr"] = lr
        factor = cosine_factor(self.progress(trainer), self.warmup, self.floor)
        for group, lr in zip(optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * factor
        pl_module.log("train/lr", self.base_lrs[0] * factor, batch_size=1)
