"""Head specifications: plain objects that build the detector's towers and own the loss.

They are not ``nn.Module``s, so they add no ``state_dict`` keys: the detector holds the towers
they build as ``loc_head`` / ``cls_head``.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from cuneidet.errors import ConfigError
from cuneidet.models.losses import focal_loss, ssd_loss


class HeadSpec(Protocol):
    """What :class:`~cuneidet.models.detector.SignDetector` needs from a head."""

    def cls_outputs(self, num_classes: int) -> int: ...

    def build_towers(
        self, in_channels: int, num_anchors: int, num_classes: int
    ) -> tuple[nn.Sequential, nn.Sequential]: ...

    def loss(
        self, loc_pred: Tensor, cls_logits: Tensor, loc_target: Tensor, cls_target: Tensor
    ) -> dict[str, Tensor]: ...

    def class_probabilities(self, logits: Tensor) -> Tensor: ...


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1)


class SSDHead:
    """Reference FPNSSD heads: ``num_convs`` x [conv3x3 + ReLU] then conv3x3 to A*4 / A*C.

    Softmax over C classes (column 0 = background); PyTorch's default conv init; SSD loss.
    Tower indices: convs at 0, 2, 4, 6 and the predictor at ``2 * num_convs``.
    """

    def __init__(self, num_convs: int = 4, channels: int = 256, neg_pos_ratio: int = 3) -> None:
        self.num_convs = num_convs
        self.channels = channels
        self.neg_pos_ratio = neg_pos_ratio

    def __repr__(self) -> str:
        return f"SSDHead(num_convs={self.num_convs}, channels={self.channels})"

    def cls_outputs(self, num_classes: int) -> int:
        return num_classes

    def _tower(self, in_channels: int, out_channels: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(self.num_convs):
            layers += [_conv3x3(in_channels if i == 0 else self.channels, self.channels)]
            layers += [nn.ReLU(inplace=True)]
        last_in = self.channels if self.num_convs else in_channels
        layers.append(_conv3x3(last_in, out_channels))
        return nn.Sequential(*layers)

    def build_towers(
        self, in_channels: int, num_anchors: int, num_classes: int
    ) -> tuple[nn.Sequential, nn.Sequential]:
        """(loc_head, cls_head) producing ``A*4`` and ``A*C`` channels."""
        loc = self._tower(in_channels, num_anchors * 4)
        cls = self._tower(in_channels, num_anchors * self.cls_outputs(num_classes))
        return loc, cls

    def loss(
        self, loc_pred: Tensor, cls_logits: Tensor, loc_target: Tensor, cls_target: Tensor
    ) -> dict[str, Tensor]:
        return ssd_loss(loc_pred, cls_logits, loc_target, cls_target, self.neg_pos_ratio)

    def class_probabilities(self, logits: Tensor) -> Tensor:
        """Softmax over the last dim; column 0 is background."""
        return logits.softmax(dim=-1)


class RetinaHead:
    """RetinaNet-style sigmoid head: C-1 foreground outputs per anchor, focal loss.

    Conv weights N(0, 0.01), biases 0, classifier bias -log((1 - p) / p) with p = ``prior_prob``;
    ``norm="group"`` inserts GroupNorm after every tower conv.
    """

    def __init__(
        self,
        num_convs: int = 4,
        channels: int = 256,
        prior_prob: float = 0.01,
        norm: str | None = None,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        if norm not in (None, "none", "group"):
            raise ConfigError(f"RetinaHead norm must be 'group' or None, got {norm!r}")
        if not 0.0 < prior_prob < 1.0:
            raise ConfigError(f"prior_prob must lie in (0, 1), got {prior_prob}")
        self.num_convs = num_convs
        self.channels = channels
        self.prior_prob = prior_prob
        self.norm = None if norm == "none" else norm
        self.alpha = alpha
        self.gamma = gamma

    def __repr__(self) -> str:
        return f"RetinaHead(num_convs={self.num_convs}, channels={self.channels}, norm={self.norm})"

    def cls_outputs(self, num_classes: int) -> int:
        return num_classes - 1

    def _tower(self, in_channels: int, out_channels: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(self.num_convs):
            layers.append(_conv3x3(in_channels if i == 0 else self.channels, self.channels))
            if self.norm == "group":
                layers.append(nn.GroupNorm(math.gcd(32, self.channels), self.channels))
            layers.append(nn.ReLU(inplace=True))
        layers.append(_conv3x3(self.channels if self.num_convs else in_channels, out_channels))
        for m in layers:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        return nn.Sequential(*layers)

    def build_towers(
        self, in_channels: int, num_anchors: int, num_classes: int
    ) -> tuple[nn.Sequential, nn.Sequential]:
        """(loc_head, cls_head) producing ``A*4`` and ``A*(C-1)`` channels."""
        loc = self._tower(in_channels, num_anchors * 4)
        cls = self._tower(in_channels, num_anchors * self.cls_outputs(num_classes))
        nn.init.constant_(cls[-1].bias, -math.log((1 - self.prior_prob) / self.prior_prob))
        return loc, cls

    def loss(
        self, loc_pred: Tensor, cls_logits: Tensor, loc_target: Tensor, cls_target: Tensor
    ) -> dict[str, Tensor]:
        return focal_loss(loc_pred, cls_logits, loc_target, cls_target, self.alpha, self.gamma)

    def class_probabilities(self, logits: Tensor) -> Tensor:
        """``[..., C]``: column 0 = 1 - max foreground probability, columns 1.. = sigmoid."""
        fg = logits.sigmoid()
        return torch.cat([1.0 - fg.amax(dim=-1, keepdim=True), fg], dim=-1)
