"""Paper MobileNetV2, PaperFPN and the torchvision backbones + FPN."""

from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cuneidet.errors import ConfigError
from cuneidet.models import necks
from cuneidet.models.necks import SUPPORTED_BACKBONES, PaperFPN, TorchvisionFPN
from cuneidet.models.paper_mobilenetv2 import PaperMobileNetV2


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_mobilenet_channels_and_params() -> None:
    net = PaperMobileNetV2()
    assert net.stage_channels == [20, 10, 15, 20, 40, 60, 100, 512]
    assert len(net.features) == 8
    assert abs(_params(net) - 590_000) / 590_000 < 0.01


def test_paper_mobilenet_layer_outputs_and_strides() -> None:
    net = PaperMobileNetV2().eval()
    x = torch.zeros(1, 1, 64, 96)
    shapes = []
    with torch.no_grad():
        for layer in net.features:
            x = layer(x)
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [
        (20, 32, 48),
        (10, 16, 24),
        (15, 8, 12),
        (20, 4, 6),
        (40, 2, 3),
        (60, 2, 3),
        (100, 2, 3),
        (512, 2, 3),
    ]


def test_paper_mobilenet_odd_size_uses_ceil() -> None:
    with torch.no_grad():
        c5 = PaperMobileNetV2().eval()(torch.zeros(1, 1, 65, 97))
    assert tuple(c5.shape) == (1, 512, math.ceil(65 / 32), math.ceil(97 / 32))


def test_paper_mobilenet_key_layout() -> None:
    keys = PaperMobileNetV2().state_dict().keys()
    block_suffixes = {k.split(".conv.")[1].split(".")[0] for k in keys if ".mobile_block." in k}
    assert block_suffixes == {"0", "1", "3", "4", "6", "7"}
    blocks_per_stage = {
        k: len({key.split(".")[3] for key in keys if key.startswith(f"features.{k}.mobile_block")})
        for k in range(1, 7)
    }
    assert blocks_per_stage == {1: 1, 2: 2, 3: 3, 4: 4, 5: 3, 6: 3}
    assert "features.0.0.weight" in keys
    assert "features.7.1.num_batches_tracked" in keys
    # t = 1 block still has the expand conv
    assert tuple(
        PaperMobileNetV2().state_dict()["features.1.mobile_block.0.conv.0.weight"].shape
    ) == (
        20,
        20,
        1,
        1,
    )


def test_paper_mobilenet_residual_only_for_stride1_same_channels() -> None:
    net = PaperMobileNetV2()
    first = net.features[4].mobile_block[0]
    rest = net.features[4].mobile_block[1]
    assert not first.use_residual and rest.use_residual
    assert not net.features[5].mobile_block[0].use_residual  # 40 -> 60 at stride 1


def test_paper_mobilenet_init() -> None:
    torch.manual_seed(0)
    net = PaperMobileNetV2()
    last = net.features[7][0].weight  # 1x1, 512 out
    assert last.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_paper_mobilenet_classifier_variant() -> None:
    net = PaperMobileNetV2(with_classifier=True).eval()
    assert isinstance(net.features[8], nn.AvgPool2d)
    assert "classifier.1.weight" in net.state_dict()
    with torch.no_grad():
        logits = net(torch.zeros(2, 1, 224, 224))
    assert tuple(logits.shape) == (2, 240)


def test_paper_fpn_levels_and_params() -> None:
    fpn = PaperFPN().eval()
    assert fpn.strides == [32, 64] and fpn.out_channels == 256
    extra = _params(fpn) - _params(fpn.features)
    assert extra == 512 * 256 + 256 + 9 * 512 * 256 + 256  # 1.31 M
    with torch.no_grad():
        p5, p6 = fpn(torch.zeros(1, 1, 512, 512))
    assert tuple(p5.shape) == (1, 256, 16, 16)
    assert tuple(p6.shape) == (1, 256, 8, 8)
    assert torch.all(fpn.conv6.bias == 0) and torch.all(fpn.toplayer.bias == 0)


def test_paper_fpn_with_p4() -> None:
    fpn = PaperFPN(with_p4=True).eval()
    assert fpn.strides == [16, 32, 64]
    with torch.no_grad():
        maps = fpn(torch.zeros(1, 1, 100, 130))
    assert [tuple(m.shape[-2:]) for m in maps] == [(7, 9), (4, 5), (2, 3)]


def test_paper_fpn_reuses_given_backbone() -> None:
    backbone = PaperMobileNetV2(with_classifier=True)
    fpn = PaperFPN(backbone=backbone)
    assert len(fpn.features) == 8
    assert fpn.features[0][0].weight is backbone.features[0][0].weight


@pytest.mark.parametrize("backbone", SUPPORTED_BACKBONES)
def test_torchvision_fpn_shapes(backbone: str) -> None:
    fpn = TorchvisionFPN(backbone, out_channels=32).eval()
    assert fpn.strides == [16, 32, 64]
    assert fpn.body.state_dict()[next(iter(fpn.body.state_dict()))].shape[1] == 1
    with torch.no_grad():
        maps = fpn(torch.zeros(1, 1, 100, 130))
    assert [tuple(m.shape) for m in maps] == [
        (1, 32, 7, 9),
        (1, 32, 4, 5),
        (1, 32, 2, 3),
    ]


def test_torchvision_fpn_five_levels() -> None:
    fpn = TorchvisionFPN("resnet18", levels=[8, 16, 32, 64, 128], out_channels=16).eval()
    with torch.no_grad():
        maps = fpn(torch.zeros(1, 1, 128, 160))
    assert [tuple(m.shape[-2:]) for m in maps] == [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]


@pytest.mark.parametrize("levels", [[16, 64], [2, 4], [64, 128], [], [24, 48]])
def test_torchvision_fpn_rejects_bad_levels(levels: list[int]) -> None:
    with pytest.raises(ConfigError, match="levels"):
        TorchvisionFPN("resnet18", levels=levels)


def test_torchvision_fpn_unknown_backbone() -> None:
    with pytest.raises(ConfigError, match="unknown backbone"):
        TorchvisionFPN("vgg16")


def test_pretrained_sums_rgb_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(necks, "_imagenet_state_dict", lambda name: reference)
    fpn = TorchvisionFPN("resnet18", pretrained=True, out_channels=16)
    stem = fpn.body.conv1.weight
    assert tuple(stem.shape) == (64, 1, 7, 7)
    assert torch.allclose(stem, reference["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(fpn.body.layer1[0].conv1.weight, reference["layer1.0.conv1.weight"])


def test_pretrained_offline_gives_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(ConfigError, match="pretrained=false"):
        TorchvisionFPN("mobilenet_v2", pretrained=True)
