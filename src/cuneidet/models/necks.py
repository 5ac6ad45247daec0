"""Feature pyramids: the paper's P5/P6 wrapper and torchvision backbones + FPN.

Every neck maps ``[N, 1, H, W]`` to a list of ``[N, out_channels, ceil(H/s), ceil(W/s)]`` maps,
one per stride ``s`` in ``strides`` (finest first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from cuneidet.errors import ConfigError
from cuneidet.models.paper_mobilenetv2 import C4_INDEX, PaperMobileNetV2, init_conv_paper


class PaperFPN(nn.Module):
    """Reference ``MobileNetV2FPN``: P5 = 1x1(C5), P6 = 3x3 s2(C5), optional P4; no activations."""

    def __init__(
        self,
        width_mult: float = 0.625,
        in_channels: int = 1,
        with_p4: bool = False,
        backbone: PaperMobileNetV2 | None = None,
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        if backbone is None:
            backbone = PaperMobileNetV2(width_mult=width_mult, in_channels=in_channels)
        # only the first 8 layers (C5); the classifier's avg pool, if any, is dropped
        self.features = nn.Sequential(*list(backbone.features)[:8])
        c5 = backbone.last_channel
        self.conv6 = nn.Conv2d(c5, out_channels, kernel_size=3, stride=2, padding=1)
        self.toplayer = nn.Conv2d(c5, out_channels, kernel_size=1)
        self.with_p4 = with_p4
        if with_p4:
            self.latlayer1 = nn.Conv2d(backbone.c4_channels, out_channels, kernel_size=1)
            self.smooth1 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.out_channels = out_channels
        self.strides: list[int] = [16, 32, 64] if with_p4 else [32, 64]
        for name, m in self.named_children():
            if name != "features":
                init_conv_paper(m)

    def forward(self, x: Tensor) -> list[Tensor]:
        c4 = x
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == C4_INDEX:
                c4 = x
        c5 = x
        p5 = self.toplayer(c5)
        p6 = self.conv6(c5)
        if not self.with_p4:
            return [p5, p6]
        lateral = self.latlayer1(c4)
        up = F.interpolate(p5, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return [self.smooth1(up + lateral), p5, p6]


class ExtraStridedLevels(ExtraFPNBlock):
    """Adds levels above the top FPN output by chained 3x3 stride-2 convs (P6 = conv(P5), ...).

    Like torchvision's ``LastLevelP6P7``, a ReLU sits between consecutive extra convs.
    """

    def __init__(self, channels: int, num_levels: int, first_stride: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
            for _ in range(num_levels)
        )
        self.first_stride = first_stride
        for conv in self.convs:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(
        self, results: list[Tensor], x: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        top = results[-1]
        for i, conv in enumerate(self.convs):
            top = conv(top if i == 0 else F.relu(top))
            results.append(top)
            names.append(str(self.first_stride * 2**i))
        return results, names


@dataclass(frozen=True)
class _BackboneSpec:
    body: str  # "" = the model itself, else the attribute holding the sequential stages
    first_conv: tuple[str, ...]  # attribute path of the RGB stem conv
    nodes: dict[int, tuple[str, int]]  # stride -> (child name, channels)


_BACKBONES: dict[str, _BackboneSpec] = {
    "mobilenet_v2": _BackboneSpec(
        "features",
        ("features", "0", "0"),
        {4: ("3", 24), 8: ("6", 32), 16: ("13", 96), 32: ("18", 1280)},
    ),
    "mobilenet_v3_large": _BackboneSpec(
        "features",
        ("features", "0", "0"),
        {4: ("3", 24), 8: ("6", 40), 16: ("12", 112), 32: ("16", 960)},
    ),
    "resnet18": _BackboneSpec(
        "",
        ("conv1",),
        {4: ("layer1", 64), 8: ("layer2", 128), 16: ("layer3", 256), 32: ("layer4", 512)},
    ),
    "resnet50": _BackboneSpec(
        "",
        ("conv1",),
        {4: ("layer1", 256), 8: ("layer2", 512), 16: ("layer3", 1024), 32: ("layer4", 2048)},
    ),
}
SUPPORTED_BACKBONES: tuple[str, ...] = tuple(_BACKBONES)


def validate_levels(levels: Sequence[int]) -> list[int]:
    levels = sorted(int(s) for s in levels)
    ok = bool(levels) and 4 <= levels[0] <= 32 and levels[0] & (levels[0] - 1) == 0
    ok = ok and all(b == 2 * a for a, b in pairwise(levels))
    if not ok:
        raise ConfigError(
            f"levels must be consecutive powers of two starting at 4..32 (e.g. [16, 32, 64]), "
            f"got {list(levels)}"
        )
    return levels


def _imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """ImageNet weights of a torchvision model from the torch hub cache (downloads if absent)."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # no network, truncated file, bad hash...
        raise ConfigError(
            f"could not load the ImageNet weights {weights} for backbone {name!r} "
            f"({type(err).__name__}: {err}). Set pretrained=false, or pre-populate the torch hub "
            f"cache ({torch.hub.get_dir()}/checkpoints) with {weights.url.rsplit('/', 1)[-1]}."
        ) from err


def _to_single_channel(model: nn.Module, path: tuple[str, ...]) -> None:
    """Replace the RGB stem conv by a 1-channel conv whose kernel is the sum of the RGB kernels."""
    parent = model
    for attr in path[:-1]:
        parent = getattr(parent, attr)
    old: nn.Conv2d = getattr(parent, path[-1])
    new = nn.Conv2d(
        1,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        bias=old.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    setattr(parent, path[-1], new)


def build_torchvision_body(
    backbone: str, strides: Sequence[int], pretrained: bool = False
) -> tuple[nn.Module, list[int]]:
    """A 1-channel torchvision backbone returning ``{str(stride): map}``, and its channels."""
    if backbone not in _BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}; choose one of {SUPPORTED_BACKBONES}")
    spec = _BACKBONES[backbone]
    model = torchvision.models.get_model(backbone, weights=None)
    if pretrained:
        model.load_state_dict(_imagenet_state_dict(backbone))
    _to_single_channel(model, spec.first_conv)
    source = getattr(model, spec.body) if spec.body else model
    return_layers = {spec.nodes[s][0]: str(s) for s in strides}
    body = IntermediateLayerGetter(source, return_layers=return_layers)
    return body, [spec.nodes[s][1] for s in strides]


class TorchvisionFPN(nn.Module):
    """Torchvision backbone (1-channel stem) + torchvision FPN + extra stride-2 levels.

    Levels up to stride 32 come from the backbone through ``FeaturePyramidNetwork``; levels
    above 32 are added by :class:`ExtraStridedLevels` on the stride-32 FPN output.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        levels: Sequence[int] = (16, 32, 64),
        out_channels: int = 256,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        self.strides: list[int] = validate_levels(levels)
        self.out_channels = out_channels
        self.backbone_name = backbone
        body_strides = [s for s in self.strides if s <= 32]
        extra = len(self.strides) - len(body_strides)
        self.body, in_channels = build_torchvision_body(backbone, body_strides, pretrained)
        extra_block = ExtraStridedLevels(out_channels, extra, 64) if extra else None
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra_block)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.body(x)
        return list(self.fpn(OrderedDict(feats)).values())
