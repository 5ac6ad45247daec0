"""The modified MobileNetV2 of Dencker et al. 2020 (reference ``mobilenetv2_mod03.py``).

Differences from torchvision's MobileNetV2 (all needed to load the released weights strictly):
1-channel input, channel counts ``int(c * width_mult)`` without rounding to multiples of 8, a
stride-2 first bottleneck, an expand conv even for t = 1, no 320-channel block and a 512-channel
last conv. Block parameters live under ``features.k.mobile_block.i.conv.{0,1,3,4,6,7}``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# t (expansion), c (channels at width 1), n (blocks), s (stride of the first block)
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 2),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 1),
)
C4_INDEX = 3  # features[3] ends at stride 16
C5_INDEX = 7  # features[7] is the last 1x1 conv (stride 32)


def conv_bn_relu6(in_ch: int, out_ch: int, kernel_size: int, stride: int) -> nn.Sequential:
    """Bias-free conv + BN + ReLU6 (keys ``0.weight``, ``1.*``)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 -> project 1x1; the expand conv exists even for t = 1."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = in_ch * expand_ratio
        self.use_residual = stride == 1 and in_ch == out_ch
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileStage(nn.Module):
    """A stage of ``n`` inverted residual blocks held in ``mobile_block`` (reference name)."""

    def __init__(self, in_ch: int, out_ch: int, expand_ratio: int, n: int, stride: int) -> None:
        super().__init__()
        blocks = []
        for i in range(n):
            blocks.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expand_ratio))
            in_ch = out_ch
        self.mobile_block = nn.Sequential(*blocks)
        self.out_channels = out_ch

    def forward(self, x: Tensor) -> Tensor:
        return self.mobile_block(x)


class PaperMobileNetV2(nn.Module):
    """Modified MobileNetV2 backbone (and optional classifier used for pre-training).

    ``features[0..7]`` maps a ``[N, in_channels, H, W]`` image to C5 ``[N, 512, H/32, W/32]``
    (ceil division). With ``with_classifier=True``, ``features[8]`` is the 7x7 average pool and
    ``classifier`` = Dropout(0.5) + Linear(512 -> num_classes), as in the reference classifier.
    """

    def __init__(
        self,
        width_mult: float = 0.625,
        in_channels: int = 1,
        num_classes: int = 240,
        input_size: int = 224,
        with_classifier: bool = False,
    ) -> None:
        super().__init__()
        if input_size % 32 != 0:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        in_ch = int(32 * width_mult)
        self.last_channel = int(512 * width_mult) if width_mult > 1.0 else 512
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, in_ch, 3, 2)]
        self.stage_channels: list[int] = [in_ch]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            stage = MobileStage(in_ch, int(c * width_mult), t, n, s)
            layers.append(stage)
            in_ch = stage.out_channels
            self.stage_channels.append(in_ch)
        layers.append(conv_bn_relu6(in_ch, self.last_channel, 1, 1))
        self.stage_channels.append(self.last_channel)
        self.c4_channels = self.stage_channels[C4_INDEX]
        self.classifier: nn.Sequential | None = None
        if with_classifier:
            layers.append(nn.AvgPool2d(input_size // 32, stride=1))
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Linear(self.last_channel, num_classes)
            )
        self.features = nn.Sequential(*layers)
        self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """C5 features, or class logits when the classifier is present."""
        x = self.features(x)
        if self.classifier is None:
            return x
        return self.classifier(torch.flatten(x, 1))

    def reset_parameters(self) -> None:
        """Reference init: conv N(0, sqrt(2/(k*k*out))), BN (1, 0), Linear N(0, 0.01), bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init_conv_paper(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)


def init_conv_paper(conv: nn.Conv2d) -> None:
    """He-style init of the reference: N(0, sqrt(2 / (k_h * k_w * out_channels))), bias 0."""
    n = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / n))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
