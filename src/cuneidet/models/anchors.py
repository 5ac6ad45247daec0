"""Anchor boxes of the reference ``RetinaBoxCoder`` / ``FPNSSDBoxCoder`` (identical code)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from cuneidet.errors import ConfigError

Size = tuple[int, int]


class AnchorGenerator:
    """xyxy anchors for every cell of every feature level.

    ``sizes[l]`` is the square root of the anchor area at level ``l`` (finest level first). For
    area s, ratio r (= w/h) and scale k: h = sqrt(s / r) * k, w = r * h. Cell anchors are
    ratio-major, scale-minor; the duplicated ratio 2 of the reference is kept on purpose (the
    released weights have 12 anchors per cell in exactly this order). Centres are
    ``((i + 0.5) * W / fm_w, (j + 0.5) * H / fm_h)``. Output order: level -> (y * fm_w + x) ->
    cell anchor. Anchors are not clipped.
    """

    def __init__(
        self,
        sizes: Sequence[float] = (128, 256),
        aspect_ratios: Sequence[float] = (2, 1, 2, 3),
        scales: Sequence[float] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        cache_size: int = 64,
    ) -> None:
        if not sizes or not aspect_ratios or not scales:
            raise ConfigError("anchor sizes, aspect_ratios and scales must all be non-empty")
        self.sizes = [float(s) for s in sizes]
        self.aspect_ratios = [float(r) for r in aspect_ratios]
        self.scales = [float(k) for k in scales]
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, Tensor] = OrderedDict()

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map cell."""
        return len(self.aspect_ratios) * len(self.scales)

    @property
    def num_levels(self) -> int:
        return len(self.sizes)

    def cell_anchor_wh(self) -> Tensor:
        """``[L, num_anchors, 2]`` (w, h) per level, float64."""
        wh = []
        for size in self.sizes:
            for r in self.aspect_ratios:
                h = math.sqrt(size * size / r)
                wh.extend([r * h * k, h * k] for k in self.scales)
        return torch.tensor(wh, dtype=torch.float64).view(self.num_levels, self.num_anchors, 2)

    def __call__(
        self,
        image_size: Size,
        feature_sizes: Sequence[Size],
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """``[A, 4]`` float32 xyxy anchors; ``image_size`` and ``feature_sizes`` are (h, w)."""
        if len(feature_sizes) != self.num_levels:
            raise ConfigError(
                f"the anchor generator has {self.num_levels} sizes {self.sizes} but the model "
                f"gives {len(feature_sizes)} feature levels {list(feature_sizes)}; set "
                f"anchors.sizes to one size per level"
            )
        key = (
            tuple(int(v) for v in image_size),
            tuple((int(h), int(w)) for h, w in feature_sizes),
            str(torch.device(device)),
        )
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = self._generate(key[0], key[1]).to(device)
            self._cache[key] = anchors
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return anchors

    def _generate(self, image_size: Size, feature_sizes: Sequence[Size]) -> Tensor:
        img_h, img_w = image_size
        boxes = []
        for (fm_h, fm_w), wh in zip(feature_sizes, self.cell_anchor_wh(), strict=True):
            xs = (torch.arange(fm_w, dtype=torch.float64) + 0.5) * (img_w / fm_w)
            ys = (torch.arange(fm_h, dtype=torch.float64) + 0.5) * (img_h / fm_h)
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            ctr = torch.stack([cx, cy], dim=-1).view(fm_h, fm_w, 1, 2)
            half = (wh / 2).view(1, 1, -1, 2)
            boxes.append(torch.cat([ctr - half, ctr + half], dim=-1).reshape(-1, 4))
        return torch.cat(boxes).float()
