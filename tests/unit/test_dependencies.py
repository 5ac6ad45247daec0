"""The torch/torchvision pair must load torchvision's compiled ops (the CPU-wheel trap)."""

import torch


def test_torchvision_nms_runs():
    from torchvision.ops import batched_nms, nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1, 2]


def test_torch_is_not_capped_below_2_14():
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    assert (major, minor) >= (2, 14)


def test_lightning_package_is_pytorch_lightning():
    import pytorch_lightning as pl

    from cuneidet.models.module import DetectorModule

    assert issubclass(DetectorModule, pl.LightningModule)
