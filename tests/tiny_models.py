"""Tiny random-weight sign detectors for export and runtime tests (CPU, seconds)."""

from __future__ import annotations

import torch

from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.classifier import SignClassifierNet
from cuneidet.models.detector import SignDetector
from cuneidet.models.efficientnet_lite import EfficientNetLiteFPN
from cuneidet.models.heads import SSDHead
from cuneidet.models.necks import PaperFPN
from cuneidet.models.two_stage import TwoStageDetector


def one_stage_detector() -> SignDetector:
    torch.manual_seed(0)
    return SignDetector(
        PaperFPN(out_channels=16),
        SSDHead(num_convs=1, channels=16),
        AnchorGenerator(sizes=(32, 64), aspect_ratios=(1, 2), scales=(1.0,)),
        num_classes=6,
    ).eval()


def two_stage_recogniser() -> TwoStageDetector:
    torch.manual_seed(0)
    localiser = SignDetector(
        EfficientNetLiteFPN(levels=[8, 16, 32], out_channels=16, pretrained=False),
        SSDHead(num_convs=1, channels=16),
        AnchorGenerator(sizes=[16, 32, 64], aspect_ratios=[1], scales=[1.0]),
        num_classes=2,
    )
    with torch.no_grad():  # spread the random scores: no near-ties for the box cap and NMS
        localiser.cls_head[-1].weight.mul_(30.0)
    classifier = SignClassifierNet(num_classes=7, pretrained=False)
    model = TwoStageDetector(
        localiser, classifier, top_k=3, crop_size=32, loc_score_thresh=0.0, max_boxes=5000
    ).eval()
    model.sign_height = 64.0
    return model
