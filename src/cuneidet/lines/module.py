"""LightningModule of a line network: dense per-cell training, line-level evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from cuneidet.data.line_geometry import MapGrid
from cuneidet.errors import ConfigError
from cuneidet.lines.evaluate import score_view
from cuneidet.lines.metrics import LineScores
from cuneidet.lines.predict import (
    LinePostprocess,
    hypotheses_from_probability,
    line_probability,
)
from cuneidet.models.checkpoint import rebuild_module
from cuneidet.models.module import optimizers
from cuneidet.utils.io import write_json

log = logging.getLogger(__name__)


def cell_targets(distance: torch.Tensor, grid: MapGrid, shape: tuple[int, int], height: float):
    """Per map cell: 1 if its centre lies within ``height`` px of a line, else 0.

    ``distance`` is ``[N, H, W]`` (px to the nearest line); cells centred outside the crop are
    ignored (-1).
    """
    _n, full_h, full_w = distance.shape
    ys = torch.as_tensor(grid.to_image(np.arange(shape[0])), dtype=torch.float32)
    xs = torch.as_tensor(grid.to_image(np.arange(shape[1])), dtype=torch.float32)
    rows = ys.round().long().clamp(0, full_h - 1).to(distance.device)
    cols = xs.round().long().clamp(0, full_w - 1).to(distance.device)
    sampled = distance[:, rows][:, :, cols]
    targets = (sampled < height).long()
    outside = (ys >= full_h)[:, None] | (xs >= full_w)[None, :]
    targets[:, outside.to(distance.device)] = -1
    return targets


class LineModule(pl.LightningModule):
    """Trains a line network on crops; evaluates whole views as line hypotheses.

    Logged: ``train/loss``, ``val/line_F1`` (+ precision, recall) and on test also
    ``test/assign_acc`` (line ↔ transliteration assignment accuracy, content-derived reference)
    and ``test/assign_acc_order`` (the reference code's definition: annotated line order).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        line_height: float = 24.0,
        threshold: float = LinePostprocess.threshold,
        method: str = LinePostprocess.method,
        assignment: str = LinePostprocess.assignment,
        line_length: str = LinePostprocess.line_length,
        variance: float = LinePostprocess.variance,
        max_extra_lines: int = LinePostprocess.max_extra_lines,
        text_length: str = LinePostprocess.text_length,
        rescale: str = LinePostprocess.rescale,
        match_tolerance: float = 0.25,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "line_height": line_height,
                "threshold": threshold,
                "method": method,
                "assignment": assignment,
                "line_length": line_length,
                "variance": variance,
                "max_extra_lines": max_extra_lines,
                "text_length": text_length,
                "rescale": rescale,
                "match_tolerance": match_tolerance,
            },
            logger=False,
        )
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.post = LinePostprocess(
            threshold=threshold,
            method=method,
            assignment=assignment,
            line_length=line_length,
            variance=variance,
            max_extra_lines=max_extra_lines,
            text_length=text_length,
            rescale=rescale,
        )
        self.model_config: dict[str, Any] | None = None
        self.scores = {"val": LineScores(), "test": LineScores()}  # over all views, per epoch
        self.view_scores: dict[str, dict[str, LineScores]] = {"val": {}, "test": {}}

    @property
    def grid(self) -> MapGrid:
        return self.net.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.net(batch["image"])
        targets = cell_targets(
            batch["distance"], self.grid, tuple(logits.shape[-2:]), self.hparams.line_height
        )
        loss = F.cross_entropy(logits, targets, ignore_index=-1)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite line loss at step {self.global_step}; lower model.optimizer.lr"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        positive = (targets == 1).sum().float() / (targets >= 0).sum().clamp(min=1)
        self.log("train/positive_fraction", positive, batch_size=logits.shape[0])
        return loss

    # -- evaluation -----------------------------------------------------------------------------
    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, dict) and "samples" in batch:  # whole views: only the images move
            return {**batch, "images": batch["images"].to(device)}
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        for image, sample in zip(batch["images"], batch["samples"], strict=True):
            probability = line_probability(self.net, image)
            hypotheses, assigned = hypotheses_from_probability(
                probability, self.grid, sample.size, sample.transliteration, self.post
            )
            scores = LineScores()
            score_view(scores, sample, hypotheses, assigned, self.hparams.match_tolerance)
            self.view_scores[stage][sample.key] = scores

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self.view_scores["val"] = {}

    def on_test_epoch_start(self) -> None:
        self.view_scores["test"] = {}

    def _all_views(self, stage: str) -> dict[str, LineScores]:
        """This stage's per-view scores of every process. Under DDP each rank scores its share
        of the views (a distributed sampler pads the share with repeats, so views are keyed)."""
        views = self.view_scores[stage]
        if self._trainer is None or self.trainer.world_size <= 1:
            return views
        parts: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(parts, views)
        return {key: scores for part in parts for key, scores in part.items()}

    def _log_scores(self, stage: str) -> None:
        views = self._all_views(stage)
        scores = self.scores[stage] = LineScores.merged([views[k] for k in sorted(views)])
        self.log(f"{stage}/line_F1", 100.0 * scores.f1, prog_bar=True)
        self.log(f"{stage}/line_precision", 100.0 * scores.precision)
        self.log(f"{stage}/line_recall", 100.0 * scores.recall)
        if scores.assigned_total:
            self.log(f"{stage}/assign_acc", 100.0 * scores.assignment_accuracy)
        if scores.order_total:
            self.log(f"{stage}/assign_acc_order", 100.0 * scores.order_accuracy)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    # -- the training app's hooks ---------------------------------------------------------------
    def datamodule_arguments(self) -> dict[str, Any]:
        return {}

    def data_summary(self, data: Any) -> dict[str, Any]:
        return {
            "train_sets": [f"lines_{data.train_split}"],
            "test_sets": [f"lines_{data.test_split}"],
        }

    def write_test_report(self, datamodule: Any, out_dir: Any, **_: Any) -> dict[str, Any]:
        """``lines_metrics.json`` with the test scores; returns the headline figures."""
        scores = self.scores["test"].summary()
        write_json(Path(out_dir) / "lines_metrics.json", scores)
        return {
            "test_line_f1": scores["f1"],
            "test_line_precision": scores["precision"],
            "test_line_recall": scores["recall"],
            "test_assign_acc": scores["assignment_accuracy"],
        }

    # -- optimisation and checkpoints -------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        return optimizers(self, self.optimizer_factory, self.scheduler_factory)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cuneidet"] = {"model_config": self.model_config}


def load_line_module(ckpt_path: str) -> LineModule:
    """The line network saved in ``ckpt_path``; a clear error when it holds another model."""
    module = rebuild_module(ckpt_path)
    if not isinstance(module, LineModule):
        raise ConfigError(
            f"{ckpt_path} holds a {type(module).__name__}, not a line network; train one with "
            "cuneidet-train model=line_net"
        )
    return module
