"""``SignClassifier``: a LightningModule that names sign crops (class 0: not a sign)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from cuneidet.models.classifier import SignClassifierNet
from cuneidet.models.module import optimizers
from cuneidet.utils.io import write_json

log = logging.getLogger(__name__)


def crop_accuracy(top5: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracies in percent from each crop's 5 best classes (best first) and its true class.

    ``top1``, ``top5`` and ``mean_per_class`` (the mean over the sign classes present of their
    top-1 recall) are over sign crops (label ≥ 1); ``background`` is the share of background
    crops called background, ``sign_vs_background`` the share of all crops on the right side.
    """
    top5 = np.asarray(top5).reshape(len(labels), -1)
    labels = np.asarray(labels)
    signs = labels > 0
    out: dict[str, float] = {
        "num_sign_crops": int(signs.sum()),
        "num_background_crops": int((~signs).sum()),
    }
    hit1 = top5[:, 0] == labels
    hitk = (top5 == labels[:, None]).any(axis=1)
    if signs.any():
        out["top1"] = 100.0 * float(hit1[signs].mean())
        out["top5"] = 100.0 * float(hitk[signs].mean())
        per_class = pd.Series(hit1[signs]).groupby(labels[signs]).mean()
        out["mean_per_class"] = 100.0 * float(per_class.mean())
        out["num_classes"] = len(per_class)
    else:
        out.update(top1=float("nan"), top5=float("nan"), mean_per_class=float("nan"), num_classes=0)
    out["background"] = 100.0 * float(hit1[~signs].mean()) if (~signs).any() else float("nan")
    out["sign_vs_background"] = 100.0 * float(((top5[:, 0] > 0) == signs).mean())
    return out


class SignClassifier(pl.LightningModule):
    """Cross-entropy (label smoothing) on augmented crops; validation selects on ``val/top1``."""

    def __init__(
        self,
        net: SignClassifierNet,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"label_smoothing": label_smoothing}, logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = label_smoothing
        self._outputs: dict[str, list[np.ndarray]] = {"top5": [], "labels": []}
        self.test_result: dict[str, float] = {}
        self.model_config: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.net(batch["images"])
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        acc = (logits.argmax(1) == batch["labels"]).float().mean()
        size = len(batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/acc", acc, batch_size=size)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step}; lower model.optimizer.lr"
            )
        return loss

    def _collect(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.net(batch["images"])
        k = min(5, logits.shape[1])
        self._outputs["top5"].append(logits.topk(k, dim=1).indices.cpu().numpy())
        self._outputs["labels"].append(batch["labels"].cpu().numpy())
        return F.cross_entropy(logits, batch["labels"])

    def _finish(self, prefix: str) -> dict[str, float]:
        if not self._outputs["labels"]:
            return {}
        result = crop_accuracy(
            np.concatenate(self._outputs["top5"]), np.concatenate(self._outputs["labels"])
        )
        self._outputs = {"top5": [], "labels": []}
        for name in ("top1", "top5", "mean_per_class", "background"):
            self.log(f"{prefix}/{name}", result[name], prog_bar=name == "top1")
        return result

    def on_validation_epoch_start(self) -> None:
        self._outputs = {"top5": [], "labels": []}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._collect(batch), batch_size=len(batch["labels"]))

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_start(self) -> None:
        self._outputs = {"top5": [], "labels": []}
        self._test_pairs: tuple[np.ndarray, np.ndarray] | None = None

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("test/loss", self._collect(batch), batch_size=len(batch["labels"]))

    def on_test_epoch_end(self) -> None:
        self._test_pairs = (
            np.concatenate(self._outputs["top5"]),
            np.concatenate(self._outputs["labels"]),
        )
        self.test_result = self._finish("test")

    def configure_optimizers(self) -> Any:
        return optimizers(self, self.optimizer_factory, self.scheduler_factory)

    # -- the training app's hooks ---------------------------------------------------------------
    def datamodule_arguments(self) -> dict[str, Any]:
        return {"num_classes": self.net.num_classes}

    def data_summary(self, data: Any) -> dict[str, Any]:
        return {
            "train_sets": list(data.train_sets),
            "test_sets": list(data.test_sets),
            "sign_height": data.get("sign_height"),
            "crop_size": data.get("crop_size"),
        }

    def write_test_report(self, datamodule: Any, out_dir: Any, **_: Any) -> dict[str, Any]:
        """metrics.json and per_class_accuracy.csv (test crops); returns the headline."""
        out_dir = Path(out_dir)
        result = dict(self.test_result)
        write_json(out_dir / "metrics.json", result)
        if self._test_pairs is not None:
            top5, labels = self._test_pairs
            names = datamodule.class_names()
            frame = pd.DataFrame({"label": labels, "hit1": top5[:, 0] == labels})
            frame["hit5"] = (top5 == labels[:, None]).any(axis=1)
            per_class = (
                frame[frame.label > 0]
                .groupby("label")
                .agg(crops=("hit1", "size"), top1=("hit1", "mean"), top5=("hit5", "mean"))
            )
            per_class.insert(0, "name", [names.get(int(c), str(c)) for c in per_class.index])
            per_class.to_csv(out_dir / "per_class_accuracy.csv")
        log.info("test crops: %s", {k: round(v, 2) for k, v in result.items()})
        return {f"test_{k}": v for k, v in result.items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cuneidet"] = {"model_config": self.model_config}
