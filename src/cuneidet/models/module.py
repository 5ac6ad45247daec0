"""LightningModule wrapping a :class:`SignDetector`: tile training, whole-segment evaluation."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cuneidet.eval.coco_metric import CocoCrossCheck
from cuneidet.eval.paper_metric import PaperSignMAP
from cuneidet.models.detector import SignDetector
from cuneidet.models.watershed import WatershedDetector

log = logging.getLogger(__name__)

DEFAULT_INFERENCE = {
    "score_thresh": 0.01,
    "nms_thresh": 0.5,
    "pre_nms_topk": None,
    "max_detections": None,
    "class_agnostic_nms": None,
}


class DetectorModule(pl.LightningModule):
    """Trains on augmented tiles; validates/tests on whole scaled segments with the paper's mAP.

    Logged metrics: ``train/loss`` (+ parts), ``val/loss``, ``val/mAP`` and ``val/global_AP`` (in
    percent, like the paper), and the same under ``test/`` plus the COCO cross-check.
    """

    def __init__(
        self,
        detector: SignDetector | WatershedDetector,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        inference: dict[str, Any] | None = None,
        coco_on_test: bool = True,
    ) -> None:
        super().__init__()
        self.inference = {**DEFAULT_INFERENCE, **_plain(inference or {})}
        # plain types only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(
            {"inference": dict(self.inference), "coco_on_test": coco_on_test}, logger=False
        )
        self.detector = detector
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        num_classes = detector.num_classes
        self.val_metric = PaperSignMAP(num_classes=num_classes)
        self.test_metric = PaperSignMAP(num_classes=num_classes)
        self.test_coco = CocoCrossCheck(num_classes=num_classes) if coco_on_test else None
        self.test_records: list[dict[str, Any]] = []
        # The model part of the Hydra config, stored in checkpoints to rebuild the module.
        self.model_config: dict[str, Any] | None = None
        # working scale (data.sign_height): the detector saw signs this many pixels high
        self.sign_height = 128.0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.detector(images)

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images = batch["images"]
        # the head's raw maps: (loc, cls) of an anchor head, (energy, class, size) of a watershed
        outputs = self.detector(images)
        # line maps mark anchors to ignore on text lines of views with generated labels
        losses = self.detector.loss(
            *outputs, batch["targets"], tuple(images.shape[-2:]), line_maps=batch.get("line_maps")
        )
        size = images.shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        log_loss_parts(self, "train", losses, size)
        self.log("train/num_pos", float(losses["num_pos"]), batch_size=size)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step}; lower model.optimizer.lr "
                "or enable gradient clipping (trainer.gradient_clip_val)"
            )
        return losses["loss"]

    # -- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any]) -> tuple[list[dict], list[dict], dict]:
        images = batch["images"]
        size = tuple(images.shape[-2:])
        outputs = self.detector(images)
        losses = self.detector.loss(*outputs, batch["targets"], size)
        preds = self.detector.postprocess(*outputs, size, **self.inference)
        preds = [{k: v.detach().cpu() for k, v in p.items()} for p in preds]
        targets = [{k: v.detach().cpu() for k, v in t.items()} for t in batch["targets"]]
        return preds, targets, losses

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds, targets, losses = self._evaluate(batch)
        self.val_metric.update(preds, targets)
        self.log("val/loss", losses["loss"], batch_size=len(targets))

    def on_validation_epoch_end(self) -> None:
        result = self.val_metric.compute()
        self.val_metric.reset()
        self.log("val/mAP", _percent(result["map"]), prog_bar=True)
        self.log("val/global_AP", _percent(result["global_ap"]))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds, targets, losses = self._evaluate(batch)
        self.test_metric.update(preds, targets)
        if self.test_coco is not None:
            self.test_coco.update(preds, targets)
        self.log("test/loss", losses["loss"], batch_size=len(targets))
        for key, index, pred, target in zip(
            batch["keys"], batch["indices"], preds, targets, strict=True
        ):
            self.test_records.append({"key": key, "index": index, "pred": pred, "target": target})

    def on_test_epoch_start(self) -> None:
        self.test_records = []

    def on_test_epoch_end(self) -> None:
        result = self.test_metric.compute()
        self.test_result = result
        self.log("test/mAP", _percent(result["map"]))
        self.log("test/global_AP", _percent(result["global_ap"]))
        self.log("test/mAP_align", _percent(result["map_align"]))
        if self.test_coco is not None:
            self.test_coco_result = self.test_coco.compute()
            for name, value in self.test_coco_result.items():
                self.log(f"test/{name}", 100.0 * float(value))
            self.test_coco.reset()
        self.test_metric.reset()

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        return optimizers(self, self.optimizer_factory, self.scheduler_factory)

    # -- the training app's hooks ---------------------------------------------------------------
    def datamodule_arguments(self) -> dict[str, Any]:
        """What the data config needs from the model: the detector's number of classes."""
        return {"num_classes": self.detector.num_classes}

    def data_summary(self, data: Any) -> dict[str, Any]:
        return {"train_sets": list(data.train_sets), "test_sets": list(data.test_sets)}

    def write_test_report(
        self, datamodule: Any, out_dir: Any, num_images: int = 4, draw_score_thresh: float = 0.3
    ) -> dict[str, Any]:
        """metrics.json, per-class AP, PR curve and drawn test segments; returns the headline."""
        from cuneidet.eval.evaluate import write_test_report

        report = write_test_report(
            self, datamodule, out_dir, num_images=num_images, draw_score_thresh=draw_score_thresh
        )
        headline = {
            "test_map": report["map"],
            "test_global_ap": report["global_ap"],
            "test_map_align": report["map_align"],
            "test_recall": report.get("recall"),
            "test_coco_map_50": report.get("coco_map_50"),
            "test_coco_map_50_class_agnostic": report.get("coco_map_50_agnostic"),
        }
        loc_ap = self.trainer.callback_metrics.get("test/loc_AP") if self._trainer else None
        if loc_ap is not None:
            headline["test_loc_ap"] = round(float(loc_ap), 2)
        return headline

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def sign_height(self) -> float:
        return float(getattr(self.detector, "sign_height", 128.0))

    @sign_height.setter
    def sign_height(self, value: float) -> None:
        # kept on the network too: inference.predict.detect_image resizes CSDD-scale images to it
        self.detector.sign_height = float(value)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cuneidet"] = {
            "model_config": self.model_config,
            "sign_height": self.sign_height,
        }


def optimizers(
    module: nn.Module,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[..., Any] | None,
) -> Any:
    """``configure_optimizers`` of the cuneidet modules: the configured optimizer over all
    parameters and, if configured, an epoch-wise learning-rate scheduler."""
    optimizer = optimizer_factory(params=module.parameters())
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer=optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


#: the parts of a head's loss that are logged when present (anchor heads: loc, cls; watershed:
#: also energy and size)
LOSS_PARTS = ("loc_loss", "cls_loss", "energy_loss", "size_loss")


def log_loss_parts(
    module: pl.LightningModule, prefix: str, losses: dict[str, Any], batch_size: int
) -> None:
    """Log ``<prefix>/<part>`` for every :data:`LOSS_PARTS` entry of ``losses``."""
    for part in LOSS_PARTS:
        if part in losses:
            module.log(f"{prefix}/{part}", losses[part], batch_size=batch_size)


def _plain(value: Any) -> dict[str, Any]:
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)  # type: ignore[return-value]
    return dict(value)


def _percent(value: float | torch.Tensor) -> float:
    value = float(value)
    return 100.0 * value if math.isfinite(value) else float("nan")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
