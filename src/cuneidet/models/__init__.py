"""cuneidet.models: the paper's detector and its modern variants."""

from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.box_coder import decode, encode, match, nms_plus_one
from cuneidet.models.detector import SignDetector
from cuneidet.models.heads import RetinaHead, SSDHead
from cuneidet.models.losses import focal_loss, ssd_loss
from cuneidet.models.necks import PaperFPN, TorchvisionFPN
from cuneidet.models.paper_mobilenetv2 import PaperMobileNetV2
from cuneidet.models.reference_weights import (
    ReferenceWeightsError,
    load_reference_weights,
    paper_detector,
)

__all__ = [
    "AnchorGenerator",
    "PaperFPN",
    "PaperMobileNetV2",
    "ReferenceWeightsError",
    "RetinaHead",
    "SSDHead",
    "SignDetector",
    "TorchvisionFPN",
    "decode",
    "encode",
    "focal_loss",
    "load_reference_weights",
    "match",
    "nms_plus_one",
    "paper_detector",
    "ssd_loss",
]
