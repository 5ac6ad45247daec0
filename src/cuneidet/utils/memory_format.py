"""Channels-last memory format for the convolutions: on this project's CPUs (oneDNN) a training
step of EfficientNet-Lite0 on 64-px crops runs ~2× faster with NHWC weights than with NCHW
(``scripts/bench_training_step.py``); converting the weights is enough, inputs may stay NCHW."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its 4-D parameters and buffers in channels-last format (in place)."""
    return module.to(memory_format=torch.channels_last)


class ChannelsLast(pl.Callback):
    """Converts the LightningModule to channels-last before its optimizer is built (``setup``),
    so the optimizer state follows; ``enabled=false`` keeps PyTorch's default format."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.enabled:
            to_channels_last(pl_module)
