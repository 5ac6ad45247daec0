"""Single-shot sign detector: feature pyramid + shared loc/cls towers over anchors (FPNSSD)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cuneidet.errors import ConfigError
from cuneidet.models.anchors import AnchorGenerator, Size
from cuneidet.models.box_coder import decode, encode, match, nms_and_caps
from cuneidet.models.heads import RetinaHead, SSDHead

Detections = dict[str, Tensor]


@contextlib.contextmanager
def eval_mode(module: Any) -> Iterator[None]:
    """Run in eval mode (BatchNorm statistics frozen) and restore the previous mode afterwards.

    Anything that is not an ``nn.Module`` (e.g. an ONNX Runtime detector) has no mode: no-op.
    """
    if not isinstance(module, nn.Module):
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class AnchorDecoding:
    """Anchor layout and decoding of an anchor detector, whatever runs its network.

    Shared by :class:`SignDetector` (PyTorch) and the ONNX Runtime detector of
    :mod:`cuneidet.deploy.runtime`, so both turn the same raw outputs into the same boxes.
    A subclass sets ``anchors`` (:class:`AnchorGenerator`), ``num_classes`` and ``strides`` and
    implements :meth:`raw_outputs`.
    """

    anchors: AnchorGenerator
    num_classes: int

    @property
    def strides(self) -> list[int]:
        raise NotImplementedError

    def raw_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``images[N, 1, H, W]`` -> ``(loc[N, A, 4], probs[N, A, C])`` (column 0 background)."""
        raise NotImplementedError

    def feature_sizes(self, image_size: Size) -> list[Size]:
        """(h, w) of every pyramid level for an ``image_size`` = (H, W) input."""
        height, width = (int(v) for v in image_size)
        return [(math.ceil(height / s), math.ceil(width / s)) for s in self.strides]

    def anchors_for(
        self,
        image_size: Size,
        feature_sizes: Sequence[Size] | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """``[A, 4]`` xyxy anchors for an (H, W) input (feature sizes derived when omitted)."""
        if feature_sizes is None:
            feature_sizes = self.feature_sizes(image_size)
        return self.anchors(tuple(image_size), feature_sizes, device)

    def _anchors_matching(self, image_size: Size, predictions: Tensor) -> Tensor:
        anchors = self.anchors_for(image_size, device=predictions.device)
        if anchors.shape[0] != predictions.shape[1]:
            raise ValueError(
                f"predictions have {predictions.shape[1]} anchors but an input of size "
                f"{tuple(image_size)} gives {anchors.shape[0]} ({self.feature_sizes(image_size)} "
                f"cells x {self.anchors.num_anchors}); pass the (H, W) of the batch the model saw"
            )
        return anchors

    def decode(
        self,
        loc: Tensor,
        probs: Tensor,
        image_size: Size,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.5,
        pre_nms_topk: int | None = None,
        max_detections: int | None = None,
        class_agnostic_nms: float | None = None,
    ) -> list[Detections]:
        """Per-image detections ``{"boxes"[D, 4], "scores"[D], "labels"[D]}``, best first.

        Reference decoding: every (anchor, class >= 1) pair with probability > ``score_thresh``
        is a candidate; per-class "+1" NMS at ``nms_thresh``; boxes are not clipped. The caps
        (``pre_nms_topk`` over all candidates, ``max_detections``) and a final class-agnostic
        "+1" NMS are off by default, as in the paper's mAP protocol.
        """
        anchors = self._anchors_matching(image_size, loc)
        return [
            _decode_image(
                loc[i].float(),
                probs[i].float(),
                anchors,
                score_thresh,
                nms_thresh,
                pre_nms_topk,
                max_detections,
                class_agnostic_nms,
            )
            for i in range(loc.shape[0])
        ]

    def detect(self, images: Tensor, **decode_kwargs: Any) -> list[Detections]:
        """Eval-mode :meth:`raw_outputs` + :meth:`decode` without autograd."""
        with eval_mode(self), torch.inference_mode():
            loc, probs = self.raw_outputs(images)
            return self.decode(loc, probs, tuple(images.shape[-2:]), **decode_kwargs)


class SignDetector(AnchorDecoding, nn.Module):
    """Detector whose only parameterised children are ``fpn``, ``loc_head`` and ``cls_head``.

    ``fpn`` maps ``[N, 1, H, W]`` to a list of maps with ``fpn.out_channels`` channels at
    ``fpn.strides``; feature map sizes are ``ceil(H / stride) x ceil(W / stride)``, which is how
    anchors are laid out for any input size. The head spec and the anchor generator are plain
    objects (no state). Class index 0 is background; indices 1..C-1 are train_labels.
    """

    def __init__(
        self,
        fpn: nn.Module,
        head: SSDHead | RetinaHead,
        anchors: AnchorGenerator,
        num_classes: int = 240,
        pos_iou: float = 0.5,
        ignore_iou: float = 0.35,
    ) -> None:
        super().__init__()
        strides = list(fpn.strides)
        if anchors.num_levels != len(strides):
            raise ConfigError(
                f"anchor sizes {anchors.sizes} give {anchors.num_levels} levels but the neck "
                f"outputs {len(strides)} levels at strides {strides}; use one size per level"
            )
        if num_classes < 2:
            raise ConfigError(f"num_classes counts background and must be >= 2, got {num_classes}")
        self.fpn = fpn
        self.head = head
        self.anchors = anchors
        self.num_classes = num_classes
        self.num_anchors = anchors.num_anchors
        self.cls_channels = head.cls_outputs(num_classes)
        self.pos_iou = pos_iou
        self.ignore_iou = ignore_iou
        self.loc_head, self.cls_head = head.build_towers(
            fpn.out_channels, anchors.num_anchors, num_classes
        )

    @property
    def strides(self) -> list[int]:
        return list(self.fpn.strides)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``images[N, 1, H, W]`` -> ``(loc[N, A, 4], cls_logits[N, A, K])``.

        Per level ``[N, A_cell*K, h, w]`` -> ``[N, h, w, A_cell*K]`` -> ``[N, h*w*A_cell, K]``,
        levels concatenated finest first (reference flattening).
        """
        n = images.shape[0]
        locs, clss = [], []
        for fm in self.fpn(images):
            locs.append(self.loc_head(fm).permute(0, 2, 3, 1).reshape(n, -1, 4))
            clss.append(self.cls_head(fm).permute(0, 2, 3, 1).reshape(n, -1, self.cls_channels))
        return torch.cat(locs, dim=1), torch.cat(clss, dim=1)

    def build_targets(
        self,
        targets: Sequence[dict[str, Tensor]],
        anchors: Tensor,
        line_maps: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Match every image's ground truth: ``(loc_target[N, A, 4], cls_target[N, A])``.

        Labels outside [0, num_classes) are dropped first; loc targets of non-positive anchors
        are zeroed (they are never used).
        """
        if line_maps is not None and len(line_maps) != len(targets):
            raise ValueError(f"got {len(line_maps)} line maps for {len(targets)} images")
        locs, clss = [], []
        for i, target in enumerate(targets):
            labels = target["labels"].to(anchors.device)
            keep = (labels >= 0) & (labels < self.num_classes)
            boxes = target["boxes"].to(anchors)[keep]
            line_map = None if line_maps is None else line_maps[i]
            matched, cls_t = match(
                anchors, boxes, labels[keep], self.pos_iou, line_map, self.ignore_iou
            )
            loc_t = torch.where((cls_t > 0)[:, None], encode(matched, anchors), 0.0)
            locs.append(loc_t)
            clss.append(cls_t)
        return torch.stack(locs), torch.stack(clss)

    def loss(
        self,
        loc: Tensor,
        cls_logits: Tensor,
        targets: Sequence[dict[str, Tensor]],
        image_size: Size,
        line_maps: Sequence[Tensor | None] | None = None,
    ) -> dict[str, Tensor]:
        """Head loss for a batch; ``targets[i]`` has xyxy ``boxes[M, 4]`` and ``labels[M]``.

        ``image_size`` is the (H, W) of the batch tensor; ``line_maps[i]`` (bool ``[H, W]``)
        marks text-line pixels whose low-IoU anchors are ignored. Returns ``loss``,
        ``loc_loss``, ``cls_loss`` and ``num_pos``.
        """
        anchors = self._anchors_matching(image_size, loc)
        loc_t, cls_t = self.build_targets(targets, anchors, line_maps)
        return self.head.loss(loc.float(), cls_logits.float(), loc_t, cls_t)

    def raw_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc[N, A, 4], probs[N, A, C])``: :meth:`forward` with the head's probabilities
        (the graph that ``cuneidet-export`` writes)."""
        loc, cls_logits = self(images)
        return loc, self.head.class_probabilities(cls_logits.float())

    def postprocess(
        self, loc: Tensor, cls_logits: Tensor, image_size: Size, **decode_kwargs: Any
    ) -> list[Detections]:
        """:meth:`decode` of raw ``forward`` outputs (logits turned into the head's
        probabilities)."""
        probs = self.head.class_probabilities(cls_logits.float())
        return self.decode(loc, probs, image_size, **decode_kwargs)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _decode_image(
    loc: Tensor,
    probs: Tensor,
    anchors: Tensor,
    score_thresh: float,
    nms_thresh: float,
    pre_nms_topk: int | None,
    max_detections: int | None,
    class_agnostic_nms: float | None,
) -> Detections:
    fg = probs[:, 1:]
    anchor_idx, cls_idx = (fg > score_thresh).nonzero(as_tuple=True)
    scores = fg[anchor_idx, cls_idx]
    if pre_nms_topk is not None and scores.numel() > pre_nms_topk:
        top = scores.topk(pre_nms_topk).indices
        anchor_idx, cls_idx, scores = anchor_idx[top], cls_idx[top], scores[top]
    labels = cls_idx + 1
    boxes = decode(loc[anchor_idx], anchors[anchor_idx])
    keep = nms_and_caps(boxes, scores, labels, nms_thresh, class_agnostic_nms, max_detections)
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
