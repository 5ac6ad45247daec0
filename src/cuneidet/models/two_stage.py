"""Two-stage sign recogniser: a class-agnostic localiser finds signs, a crop classifier names them.

Beyond the paper (DeepScribe's split of the job): the localiser is an anchor
:class:`~cuneidet.models.detector.SignDetector` or a
:class:`~cuneidet.models.watershed.WatershedDetector` with one foreground class
(``model/localiser``); every box it keeps is cut as a square crop with context
(:mod:`cuneidet.data.crops` geometry) and classified; each box emits its ``top_k`` sign classes
with score = localisation score × class probability, so the paper's protocol scores it like any
detector. :class:`TwoStageModule` trains both parts jointly (training tiles for the localiser,
sign crops for the classifier, one optimizer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cuneidet.errors import ConfigError
from cuneidet.eval.paper_metric import PaperSignMAP
from cuneidet.models.box_coder import nms_and_caps
from cuneidet.models.classifier import SignClassifierNet
from cuneidet.models.detector import Detections, SignDetector, eval_mode
from cuneidet.models.module import DetectorModule, _percent, log_loss_parts
from cuneidet.models.watershed import WatershedDetector

log = logging.getLogger(__name__)


def square_windows(boxes: Tensor, context: float, min_side: float = 8.0) -> Tensor:
    """``[K, 3]`` (cx, cy, side) windows: box centre, longer side × ``context``."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * context
    return torch.cat([centre, side.clamp(min=min_side)[:, None]], dim=1)


def crop_tensor(image: Tensor, windows: Tensor, size: int) -> Tensor:
    """``[K, C, size, size]`` bilinear crops of ``image[C, H, W]`` (0 outside the image).

    Output pixel (u, v) samples ``cx + (u + 0.5 − size/2)·side/size`` in pixel-centre
    coordinates, like :func:`cuneidet.data.crops.warp_crop`; 0 in normalised input is mid grey.
    """
    channels, height, width = image.shape
    count = windows.shape[0]
    if count == 0:
        return image.new_zeros((0, channels, size, size))
    offsets = (torch.arange(size, device=image.device, dtype=image.dtype) + 0.5 - size / 2) / size
    step = windows[:, 2:3].to(image.dtype)
    xs = windows[:, 0:1].to(image.dtype) + offsets[None, :] * step  # [K, size]
    ys = windows[:, 1:2].to(image.dtype) + offsets[None, :] * step
    # pixel-centre coordinate x -> normalised (align_corners=False): (x + 0.5) / W * 2 - 1
    gx = (xs + 0.5) / width * 2 - 1
    gy = (ys + 0.5) / height * 2 - 1
    grid = torch.stack(
        [gx[:, None, :].expand(count, size, size), gy[:, :, None].expand(count, size, size)], dim=-1
    )
    # one sampling call over all crops stacked vertically: [1, K*size, size, 2]
    out = F.grid_sample(
        image[None],
        grid.reshape(1, count * size, size, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return out.reshape(channels, count, size, size).permute(1, 0, 2, 3)


class TwoStageDetector(nn.Module):
    """Localiser + classifier with :class:`SignDetector`'s inference interface (``detect``).

    ``loc_score_thresh``, ``loc_nms_thresh`` and ``max_boxes`` select the localiser's boxes;
    ``crop_batch`` bounds the crops classified at once. ``tta_contexts`` (e.g. [1.15, 1.3, 1.5])
    averages the class probabilities of crops with these contexts (test-time augmentation
    without flips); None classifies the training geometry (``context``) only. A box's score for
    a class is ``loc_score ** loc_power × class probability``: ``loc_power`` < 1 lets the
    classifier's confidence weigh more in the ranking within a class, > 1 the localiser's.
    """

    def __init__(
        self,
        localiser: SignDetector | WatershedDetector,
        classifier: SignClassifierNet,
        top_k: int = 5,
        context: float = 1.3,
        crop_size: int = 64,
        loc_score_thresh: float = 0.05,
        loc_nms_thresh: float = 0.5,
        max_boxes: int = 1500,
        crop_batch: int = 512,
        tta_contexts: Sequence[float] | None = None,
        loc_power: float = 1.0,
    ) -> None:
        super().__init__()
        if loc_power < 0:
            raise ConfigError(f"loc_power must be >= 0, got {loc_power}")
        if localiser.num_classes != 2:
            raise ConfigError(
                f"the two-stage localiser must have one foreground class "
                f"(num_classes=2), got {localiser.num_classes}"
            )
        if not 1 <= top_k < classifier.num_classes:
            raise ConfigError(f"top_k must be in 1..{classifier.num_classes - 1}, got {top_k}")
        self.localiser = localiser
        self.classifier = classifier
        self.top_k = top_k
        self.context = context
        self.crop_size = crop_size
        self.loc_score_thresh = loc_score_thresh
        self.loc_nms_thresh = loc_nms_thresh
        self.max_boxes = max_boxes
        self.crop_batch = crop_batch
        self.tta_contexts = [float(c) for c in tta_contexts] if tta_contexts else [context]
        self.loc_power = float(loc_power)

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    @property
    def strides(self) -> list[int]:
        return self.localiser.strides

    def classify_boxes(self, image: Tensor, boxes: Tensor) -> Tensor:
        """``[K, num_classes]`` class probabilities of the crops of ``boxes`` in ``image``
        (the mean over ``tta_contexts``)."""
        if len(boxes) == 0:
            return image.new_zeros((0, self.num_classes))
        total = None
        for context in self.tta_contexts:
            windows = square_windows(boxes, context)
            probs = []
            for start in range(0, len(windows), self.crop_batch):
                crops = crop_tensor(image, windows[start : start + self.crop_batch], self.crop_size)
                probs.append(self.classifier(crops).float().softmax(dim=1))
            total = torch.cat(probs) if total is None else total + torch.cat(probs)
        return total / len(self.tta_contexts)

    def detect(
        self,
        images: Tensor,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.5,
        pre_nms_topk: int | None = None,
        max_detections: int | None = None,
        class_agnostic_nms: float | None = None,
    ) -> list[Detections]:
        """Per image ``{"boxes", "scores", "labels"}`` best first, as ``SignDetector.detect``.

        ``score_thresh`` applies to the combined score; ``nms_thresh`` is the per-class NMS of
        the combined detections; ``pre_nms_topk`` caps the localiser boxes (with ``max_boxes``).
        """
        with eval_mode(self), torch.inference_mode():
            cap = min(self.max_boxes, pre_nms_topk or self.max_boxes)
            found = self.localiser.detect(
                images,
                score_thresh=self.loc_score_thresh,
                nms_thresh=self.loc_nms_thresh,
                max_detections=cap,
            )
            return self.name(
                images, found, score_thresh, nms_thresh, max_detections, class_agnostic_nms
            )

    def localise(self, outputs: Sequence[Tensor], image_size: tuple[int, int]) -> list[Detections]:
        """The localiser's boxes from its raw ``forward`` outputs, with this recogniser's
        settings."""
        return self.localiser.postprocess(
            *outputs,
            image_size,
            score_thresh=self.loc_score_thresh,
            nms_thresh=self.loc_nms_thresh,
            max_detections=self.max_boxes,
        )

    def name(
        self,
        images: Tensor,
        found: Sequence[Detections],
        score_thresh: float = 0.01,
        nms_thresh: float = 0.5,
        max_detections: int | None = None,
        class_agnostic_nms: float | None = None,
    ) -> list[Detections]:
        """Name the localiser's boxes ``found[i]`` of ``images[i]``: top-k classes per box."""
        return [
            self._name(
                images[i], dets, score_thresh, nms_thresh, max_detections, class_agnostic_nms
            )
            for i, dets in enumerate(found)
        ]

    def _name(
        self,
        image: Tensor,
        dets: Detections,
        score_thresh: float,
        nms_thresh: float,
        max_detections: int | None,
        class_agnostic_nms: float | None,
    ) -> Detections:
        boxes, loc_scores = dets["boxes"], dets["scores"]
        probs = self.classify_boxes(image, boxes)[:, 1:]  # sign classes only (column 0: none)
        top_p, top_c = probs.topk(self.top_k, dim=1)
        scores = (loc_scores[:, None] ** self.loc_power * top_p).reshape(-1)
        labels = (top_c + 1).reshape(-1)
        all_boxes = boxes.repeat_interleave(self.top_k, dim=0)
        keep = scores > score_thresh
        all_boxes, scores, labels = all_boxes[keep], scores[keep], labels[keep]
        order = nms_and_caps(
            all_boxes, scores, labels, nms_thresh, class_agnostic_nms, max_detections
        )
        return {"boxes": all_boxes[order], "scores": scores[order], "labels": labels[order]}


class TwoStageModule(DetectorModule):
    """Joint training of :class:`TwoStageDetector`: localiser loss on class-agnostic tiles +
    ``classifier_weight`` × cross-entropy on sign crops, one optimizer over both.

    Batches come from :class:`~cuneidet.classify.data.TwoStageDataModule` as
    ``{"tiles": …, "crops": …}``. Validation and test run the whole recogniser on segments and
    also log the localiser's class-agnostic AP (``val/loc_AP``).
    """

    def __init__(
        self,
        detector: TwoStageDetector,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        inference: dict[str, Any] | None = None,
        coco_on_test: bool = True,
        classifier_weight: float = 1.0,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__(detector, optimizer, scheduler, inference, coco_on_test)
        self.classifier_weight = classifier_weight
        self.label_smoothing = label_smoothing
        self.loc_metric = PaperSignMAP(num_classes=2)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        tiles, crops = batch["tiles"], batch["crops"]
        images = tiles["images"]
        outputs = self.detector.localiser(images)
        losses = self.detector.localiser.loss(
            *outputs,
            agnostic(tiles["targets"]),
            tuple(images.shape[-2:]),
            line_maps=tiles.get("line_maps"),
        )
        logits = self.detector.classifier(crops["images"])
        crop_loss = F.cross_entropy(logits, crops["labels"], label_smoothing=self.label_smoothing)
        loss = losses["loss"] + self.classifier_weight * crop_loss
        size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        log_loss_parts(self, "train", losses, size)
        self.log("train/crop_loss", crop_loss, batch_size=len(crops["labels"]))
        acc = (logits.argmax(1) == crops["labels"]).float().mean()
        self.log("train/crop_acc", acc, batch_size=len(crops["labels"]))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step}; lower model.optimizer.lr "
                "or enable gradient clipping (trainer.gradient_clip_val)"
            )
        return loss

    def _evaluate(self, batch: dict[str, Any]) -> tuple[list[dict], list[dict], dict]:
        images = batch["images"]
        size = tuple(images.shape[-2:])
        outputs = self.detector.localiser(images)
        losses = self.detector.localiser.loss(*outputs, agnostic(batch["targets"]), size)
        found = self.detector.localise(outputs, size)
        settings = {k: v for k, v in self.inference.items() if k != "pre_nms_topk"}
        preds = self.detector.name(images, found, **settings)
        preds = [{k: v.detach().cpu() for k, v in p.items()} for p in preds]
        targets = [{k: v.detach().cpu() for k, v in t.items()} for t in batch["targets"]]
        self.loc_metric.update(
            [{k: v.detach().cpu() for k, v in p.items()} for p in found], agnostic(targets)
        )
        return preds, targets, losses

    def _log_localiser(self, prefix: str) -> None:
        result = self.loc_metric.compute()
        self.loc_metric.reset()
        self.log(f"{prefix}/loc_AP", _percent(result["map"]))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_localiser("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_localiser("test")

    def datamodule_arguments(self) -> dict[str, Any]:
        return {"num_classes": self.detector.num_classes}


def agnostic(targets: Sequence[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """Targets with every box as class 1 (a sign), for the localiser."""
    return [{"boxes": t["boxes"], "labels": torch.ones_like(t["labels"])} for t in targets]
