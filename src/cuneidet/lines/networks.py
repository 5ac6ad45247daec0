"""Line networks: each maps a gray ``[N, 1, H, W]`` image to ``[N, 2, h, w]`` line logits.

Class 1 is "a text line's centre is here". Every network has a :class:`MapGrid` telling where
its map cells sit in the image, and a minimum input size (its receptive field).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cuneidet.data.line_geometry import MapGrid
from cuneidet.errors import ConfigError
from cuneidet.models.necks import TorchvisionFPN


class PaperLRN(nn.Module):
    """The reference "LRN" with local_size 1: ``x / (1 + alpha * x²) ** beta`` element-wise."""

    def __init__(self, alpha: float = 1e-4, beta: float = 0.75) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, x: Tensor) -> Tensor:
        return x / (1.0 + self.alpha * x * x) ** self.beta


class PaperLineNet(nn.Module):
    """Dencker et al.'s ``LineNetFCN``: an AlexNet-style 227-px patch classifier, convolutional.

    ``features`` is the reference's conv1-conv5; ``fc6`` (a 6x6 conv, the convolutionalised
    9216→512 linear layer) and ``line_score`` (1x1, 512→2) are its classifier. A 227x227 input
    gives one output: the patch classifier. Stride 32, receptive field 227, first cell centred
    at pixel 113.
    """

    grid = MapGrid(stride=32.0, offset=113.0)
    min_input_size = 227

    def __init__(self, in_channels: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            PaperLRN(),
            nn.Conv2d(64, 256, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            PaperLRN(),
            *_conv_bn_relu(256, 384),
            *_conv_bn_relu(384, 384),
            *_conv_bn_relu(384, 256),
            nn.MaxPool2d(3, 2),
        )
        self.fc6 = nn.Conv2d(256, 512, kernel_size=6)
        self.dropout = nn.Dropout2d(dropout)
        self.line_score = nn.Conv2d(512, 2, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                std = 0.005 if module in (self.fc6, self.line_score) else 0.01
                nn.init.normal_(module.weight, 0.0, std)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.fc6(self.features(x)))
        return self.line_score(self.dropout(x))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel_size=3, padding=1),
        nn.BatchNorm2d(cout, affine=False),
        nn.ReLU(inplace=True),
    ]


class LineSegNet(nn.Module):
    """A modern option: torchvision backbone + FPN, and a small segmentation head at one stride.

    The head reads the finest FPN level (``stride`` 8 or 16), which sees the coarser levels'
    context through the FPN's top-down path. The coarser levels' output convolutions are
    dropped: nothing reads them, and parameters without a gradient stop DDP training.
    Checkpoints that still hold them load (the weights are ignored).
    """

    min_input_size = 32

    def __init__(
        self,
        backbone: str = "resnet18",
        stride: int = 8,
        channels: int = 64,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (8, 16):
            raise ConfigError(f"LineSegNet stride must be 8 or 16, got {stride}")
        levels = [s for s in (8, 16, 32) if s >= stride]
        self.fpn = TorchvisionFPN(backbone, levels, out_channels=channels, pretrained=pretrained)
        for level in range(1, len(levels)):
            self.fpn.fpn.layer_blocks[level] = nn.Identity()
        self._register_load_state_dict_pre_hook(self._drop_unread_level_weights)
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 2, kernel_size=1),
        )
        self.grid = MapGrid(stride=float(stride), offset=(stride - 1) / 2.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.fpn(x)[0])

    def _drop_unread_level_weights(self, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
        """Remove the dropped output convolutions' weights from an older checkpoint."""
        blocks = f"{prefix}fpn.fpn.layer_blocks."
        for key in [k for k in state_dict if k.startswith(blocks)]:
            if not key[len(blocks) :].startswith("0."):
                del state_dict[key]
