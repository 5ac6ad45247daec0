"""``OracleClassifier``: softmax classifier of oracle-bone characters with a calibrated
temperature, evaluated on held-out images only.

After every validation epoch the temperature T that minimises the validation NLL of
``softmax(logits / T)`` is fitted (one scalar, LBFGS) and kept in the checkpoint, so the
probabilities shown to a user are calibrated on images the model did not train on. The test
reports top-1/5/10 and the expected calibration error (ECE, 15 equal-width confidence bins) on
the held-out images, and top-1 on the training images next to it, so the gap is visible.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import torch
import torch.nn.functional as F

from cuneidet.classify.module import SignClassifier
from cuneidet.models.classifier import SignClassifierNet
from cuneidet.utils.io import write_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt

log = logging.getLogger(__name__)

ECE_BINS = 15


def topk_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]
) -> dict[int, float]:
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {k: float(hits[:, :k].any(dim=1).float().mean()) for k in ks}


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS
) -> tuple[float, list[dict[str, float]]]:
    """ECE of the top-1 confidence (fraction) and the per-bin table of the reliability plot."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece, table = 0.0, []
    for low, high in itertools.pairwise(edges.tolist()):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            share = float(inside.float().mean())
            acc, conf = float(correct[inside].mean()), float(confidence[inside].mean())
            ece += share * abs(acc - conf)
            table.append(
                {
                    "low": float(low),
                    "high": high,
                    "count": int(inside.sum()),
                    "accuracy": acc,
                    "confidence": conf,
                }
            )
    return ece, table


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the NLL of ``softmax(logits / T)``."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.exp().clamp(0.05, 20.0))


class OracleClassifier(SignClassifier):
    """The sign classifier's training (cross-entropy with label smoothing on augmented
    glyphs) with its own evaluation: top-k, calibration, selection on ``val/top1``."""

    def __init__(
        self,
        net: SignClassifierNet,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__(net, optimizer, scheduler, label_smoothing)
        self.register_buffer("temperature", torch.ones(()))
        self.charset: list[str] = []
        self.input_size = 64
        self._outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # type: ignore[assignment]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities ``[N, num_classes]``."""
        return F.softmax(self.net(images) / self.temperature, dim=1)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and getattr(datamodule, "classes", None):
            self.charset = list(datamodule.classes)
            self.input_size = int(datamodule.hparams.input_size)

    def _keep_logits(self, batch: dict[str, torch.Tensor], index: int) -> None:
        logits = self.net(batch["images"]).detach().cpu()
        self._outputs.setdefault(index, []).append((logits, batch["labels"].cpu()))

    def _gathered(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self._outputs.get(index, [])
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._keep_logits(batch, 0)

    def on_validation_epoch_end(self) -> None:
        if not self._outputs:
            return
        logits, labels = self._gathered(0)
        accuracy = topk_accuracy(logits, labels, (1, 10))
        if not self.trainer.sanity_checking:
            self.temperature.fill_(fit_temperature(logits, labels))
        probs = F.softmax(logits / self.temperature.cpu(), dim=1)
        self.log("val/top1", accuracy[1], prog_bar=True)
        self.log("val/top10", accuracy[10])
        self.log("val/nll", F.nll_loss(probs.clamp_min(1e-12).log(), labels))
        self.log("val/temperature", float(self.temperature))

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def test_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._keep_logits(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        logits, labels = self._gathered(0)
        probs = F.softmax(logits / self.temperature.cpu(), dim=1)
        accuracy = topk_accuracy(logits, labels, (1, 5, 10))
        ece, table = expected_calibration_error(probs, labels)
        result: dict[str, Any] = {
            "heldout_top1": accuracy[1],
            "heldout_top5": accuracy[5],
            "heldout_top10": accuracy[10],
            "ece": ece,
            "ece_uncalibrated": expected_calibration_error(F.softmax(logits, dim=1), labels)[0],
            "heldout_nll": float(F.nll_loss(probs.clamp_min(1e-12).log(), labels)),
            "heldout_images": len(labels),
            "temperature": float(self.temperature),
            "reliability": table,
        }
        if 1 in self._outputs:
            train_logits, train_labels = self._gathered(1)
            train = topk_accuracy(train_logits, train_labels, (1, 10))
            result.update(
                train_top1=train[1], train_top10=train[10], train_images=len(train_labels)
            )
        for key in ("heldout_top1", "heldout_top5", "heldout_top10", "ece", "train_top1"):
            if key in result:
                self.log(f"test/{key}", result[key])
        self.test_result = result

    # -- the training app's hooks ---------------------------------------------------------------
    def data_summary(self, data: Any) -> dict[str, Any]:
        return {
            "data": "jiaguwen",
            "folder": data.get("folder"),
            "input_size": data.get("input_size"),
        }

    def write_test_report(self, datamodule: Any, out_dir: Any, **_: Any) -> dict[str, Any]:
        """metrics.json and a reliability diagram; returns the headline figures."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        result = {**self.test_result, **datamodule.split_summary()}
        write_json(out_dir / "metrics.json", result)
        reliability_plot(
            result.get("reliability", []),
            result.get("ece", float("nan")),
            out_dir / "reliability.png",
        )
        log.info("oracle bone test: %s", {k: v for k, v in result.items() if k != "reliability"})
        return {k: v for k, v in result.items() if k != "reliability"}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cuneidet"] = {
            "model_config": self.model_config,
            "oracle": {"charset": self.charset, "input_size": self.input_size},
        }


def reliability_plot(table: list[dict[str, float]], ece: float, path: Path) -> None:
    """Accuracy against confidence per bin (the diagonal is perfect calibration)."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    if table:
        centres = [(b["low"] + b["high"]) / 2 for b in table]
        axis.bar(
            centres,
            [b["accuracy"] for b in table],
            width=1 / ECE_BINS,
            alpha=0.7,
            edgecolor="black",
            label="accuracy",
        )
        axis.plot(
            [b["confidence"] for b in table],
            [b["accuracy"] for b in table],
            "o",
            color="darkred",
            label="mean confidence",
        )
    axis.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence",
        ylabel="accuracy",
        title=f"held-out images, ECE {ece:.3f}",
    )
    axis.legend(loc="upper left")
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)
