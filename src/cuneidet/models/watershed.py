"""Deep Watershed Detection (Tuggener et al. 2018) as a detector head, anchor-free.

On one feature level of the backbone's pyramid the network predicts, per cell,

- an **energy**: a softmax over ``levels`` quantised values that peak at object centres and fall
  linearly to 0 at the rim of an oval marker (``marker_scale`` × the box),
- a **class** (softmax over the sign classes; trained on object cells only) and
- a **box size** (log width and height in cells; trained on object cells only).

Decoding thresholds the argmax (or expected) energy at ``cut_level``, labels the 8-connected
components with :func:`scipy.ndimage.label` (C code, not DWD's Python union-find) and emits one
box per component: centre = the component's mean cell position, size = the size map at the
component's energy peak, class = the mean class probability over the component
(``class_from="vote"``) or at the peak, score = peak energy (normalised to 0..1) × class
probability. With ``num_classes=2`` (one foreground class) it is a class-agnostic localiser
for the two-stage recogniser; there is no class tower then.

:class:`WatershedDetector` has the interface of :class:`~cuneidet.models.detector.SignDetector`
that the Lightning modules use: ``forward`` returns the raw maps, ``loss(*maps, targets, …)``,
``postprocess(*maps, image_size, …)``, ``detect(images, …)``, ``num_classes``, ``strides``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from cuneidet.errors import ConfigError
from cuneidet.models.box_coder import nms_and_caps
from cuneidet.models.detector import Detections, eval_mode

Size = tuple[int, int]
#: 8-connectivity of DWD's component labelling
_EIGHT = np.ones((3, 3), dtype=bool)
#: objects stamped into the energy map at once (bounds the [M, h, w] buffer)
_CHUNK = 64


class WatershedHead:
    """Settings of the watershed head: towers, energy quantisation, losses and decoding.

    A plain object (no state), like :class:`~cuneidet.models.heads.SSDHead`; the detector holds
    the towers it builds. ``stride`` picks the pyramid level (None: the finest).
    """

    def __init__(
        self,
        levels: int = 10,
        cut_level: int = 5,
        cut_on: str = "argmax",
        marker_scale: float = 0.8,
        min_radius: float = 0.75,
        stride: int | None = None,
        num_convs: int = 2,
        channels: int = 96,
        norm: str | None = "group",
        energy_weight: float = 1.0,
        object_weight: float | None = 0.5,
        class_weight: float = 1.0,
        size_weight: float = 1.0,
        min_pixels: int = 1,
        class_from: str = "vote",
        top_k: int = 5,
    ) -> None:
        if levels < 2:
            raise ConfigError(f"the watershed head needs levels >= 2, got {levels}")
        if not 1 <= cut_level < levels:
            raise ConfigError(f"cut_level must lie in 1..{levels - 1}, got {cut_level}")
        if not 0.0 < marker_scale <= 1.0:
            raise ConfigError(f"marker_scale must lie in (0, 1], got {marker_scale}")
        if norm not in (None, "none", "group"):
            raise ConfigError(f"watershed head norm must be 'group' or None, got {norm!r}")
        if cut_on not in ("argmax", "expected"):
            raise ConfigError(f"cut_on must be 'argmax' or 'expected', got {cut_on!r}")
        if class_from not in ("vote", "centre"):
            raise ConfigError(f"class_from must be 'vote' or 'centre', got {class_from!r}")
        if object_weight is not None and not 0.0 < object_weight < 1.0:
            raise ConfigError(f"object_weight must lie in (0, 1) or be null, got {object_weight}")
        if top_k < 1 or min_pixels < 1:
            raise ConfigError(f"top_k and min_pixels must be >= 1, got {top_k}, {min_pixels}")
        self.levels = int(levels)
        self.cut_level = int(cut_level)
        self.cut_on = cut_on
        self.marker_scale = float(marker_scale)
        self.min_radius = float(min_radius)
        self.stride = None if stride is None else int(stride)
        self.num_convs = int(num_convs)
        self.channels = int(channels)
        self.norm = None if norm == "none" else norm
        self.energy_weight = float(energy_weight)
        self.object_weight = None if object_weight is None else float(object_weight)
        self.class_weight = float(class_weight)
        self.size_weight = float(size_weight)
        self.min_pixels = int(min_pixels)
        self.class_from = class_from
        self.top_k = int(top_k)

    def __repr__(self) -> str:
        return (
            f"WatershedHead(levels={self.levels}, cut_level={self.cut_level}, "
            f"stride={self.stride}, num_convs={self.num_convs}, channels={self.channels})"
        )

    def tower(self, in_channels: int, out_channels: int) -> nn.Sequential:
        """``num_convs`` × [conv3x3 (+ GroupNorm) + ReLU], then a 3x3 predictor."""
        layers: list[nn.Module] = []
        for i in range(self.num_convs):
            conv_in = in_channels if i == 0 else self.channels
            layers.append(nn.Conv2d(conv_in, self.channels, 3, 1, 1))
            if self.norm == "group":
                layers.append(nn.GroupNorm(math.gcd(32, self.channels), self.channels))
            layers.append(nn.ReLU(inplace=True))
        last = self.channels if self.num_convs else in_channels
        layers.append(nn.Conv2d(last, out_channels, 3, 1, 1))
        for m in layers:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        return nn.Sequential(*layers)


# -- targets ----------
def energy_targets(
    boxes: Tensor,
    grid_size: Size,
    stride: float,
    levels: int,
    marker_scale: float = 0.8,
    min_radius: float = 0.75,
) -> tuple[Tensor, Tensor]:
    """Quantised energy ``level[h, w]`` (int64, 0 = background) and ``owner[h, w]`` (the index of
    the box whose marker wins the cell, -1 on background) for xyxy ``boxes[M, 4]`` in pixels.

    Cell (i, j) has its centre at ``((j + 0.5)·stride, (i + 0.5)·stride)``. Each box stamps an
    oval marker with radii ``marker_scale`` × its half sides (at least ``min_radius`` cells): the
    energy ``1 − d`` (d the normalised elliptic distance) is divided by the box's largest value on
    the grid, so every object peaks at ``levels − 1`` in its centre cell, whatever its sub-cell
    position or size. Where markers of touching objects overlap, the higher energy wins the cell
    (and its class and size); with ``marker_scale`` < 1 boxes that only touch keep a background
    gap between their markers.
    """
    height, width = (int(v) for v in grid_size)
    device = boxes.device
    best = torch.zeros((height, width), device=device)
    owner = torch.full((height, width), -1, dtype=torch.long, device=device)
    if boxes.numel():
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
        boxes = boxes.float()
        floor = min_radius * stride
        for start in range(0, boxes.shape[0], _CHUNK):
            chunk = boxes[start : start + _CHUNK]
            cx, cy = (chunk[:, 0] + chunk[:, 2]) / 2, (chunk[:, 1] + chunk[:, 3]) / 2
            rx = ((chunk[:, 2] - chunk[:, 0]) * marker_scale / 2).clamp(min=floor)
            ry = ((chunk[:, 3] - chunk[:, 1]) * marker_scale / 2).clamp(min=floor)
            dx = (xs[None, None, :] - cx[:, None, None]) / rx[:, None, None]
            dy = (ys[None, :, None] - cy[:, None, None]) / ry[:, None, None]
            energy = (1.0 - torch.sqrt(dx**2 + dy**2)).clamp(min=0.0)  # [m, h, w]
            peak = energy.amax(dim=(1, 2), keepdim=True)
            energy = torch.where(peak > 0, energy / peak.clamp(min=1e-6), energy)
            value, index = energy.max(dim=0)
            wins = value > best
            best = torch.where(wins, value, best)
            owner = torch.where(wins, index + start, owner)
    level = torch.ceil(best * (levels - 1)).long().clamp(0, levels - 1)
    owner = torch.where(level > 0, owner, torch.full_like(owner, -1))
    return level, owner


def _cell_mask(line_map: Tensor, grid_size: Size, stride: int) -> Tensor:
    """bool ``[h, w]``: cells with any text-line pixel of ``line_map[H, W]``."""
    height, width = grid_size
    padded = F.pad(
        line_map[None, None].float(),
        (0, width * stride - line_map.shape[1], 0, height * stride - line_map.shape[0]),
    )
    return F.max_pool2d(padded, stride)[0, 0] > 0


# -- the detector ----------
class WatershedDetector(nn.Module):
    """Anchor-free detector: pyramid ``fpn`` + energy / class / size towers on one level."""

    def __init__(
        self,
        fpn: nn.Module,
        head: WatershedHead,
        num_classes: int = 240,
        anchors: Any = None,
    ) -> None:
        super().__init__()
        if anchors is not None:
            raise ConfigError(
                "the watershed head has no anchors; set model.detector.anchors=null "
                "(model/head=watershed does)"
            )
        if num_classes < 2:
            raise ConfigError(f"num_classes counts background and must be >= 2, got {num_classes}")
        strides = [int(s) for s in fpn.strides]
        stride = strides[0] if head.stride is None else head.stride
        if stride not in strides:
            raise ConfigError(
                f"model.detector.head.stride={stride} is not a level of the backbone "
                f"(strides {strides}); pick one of them or null for the finest"
            )
        self.fpn = fpn
        self.head = head
        self.num_classes = int(num_classes)
        self.stride = stride
        self.level_index = strides.index(stride)
        channels = int(fpn.out_channels)
        self.energy_head = head.tower(channels, head.levels)
        self.size_head = head.tower(channels, 2)
        # one foreground class: no class tower (every component is a sign)
        self.cls_head = head.tower(channels, num_classes - 1) if num_classes > 2 else None

    @property
    def strides(self) -> list[int]:
        """The backbone's strides (inputs are padded to the largest)."""
        return [int(s) for s in self.fpn.strides]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``images[N, 1, H, W]`` -> ``(energy_logits[N, K, h, w], class_logits[N, C-1, h, w],
        size[N, 2, h, w])``, ``h = ceil(H / stride)``; class logits have 0 channels for a
        one-class localiser. Size is log(box side / stride)."""
        feature = self.fpn(images)[self.level_index]
        energy = self.energy_head(feature)
        size = self.size_head(feature)
        if self.cls_head is None:
            n, _, h, w = feature.shape
            classes = feature.new_zeros((n, 0, h, w))
        else:
            classes = self.cls_head(feature)
        return energy, classes, size

    # -- training ---------------------------------------------------------------------------------
    def build_targets(
        self,
        targets: Sequence[dict[str, Tensor]],
        grid_size: Size,
        device: torch.device,
        line_maps: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(level[N, h, w], label[N, h, w] (-1 off objects), size[N, 2, h, w], valid[N, h, w])``.

        Boxes with labels outside 1..num_classes-1 are dropped. ``valid`` is False on background
        cells that touch a text line of ``line_maps[i]`` (views with generated, incomplete labels:
        an unlabelled sign there must not be taught as background).
        """
        if line_maps is not None and len(line_maps) != len(targets):
            raise ValueError(f"got {len(line_maps)} line maps for {len(targets)} images")
        head = self.head
        levels, labels, sizes, valids = [], [], [], []
        for i, target in enumerate(targets):
            label = target["labels"].to(device)
            keep = (label >= 1) & (label < self.num_classes)
            boxes = target["boxes"].to(device).float()[keep]
            label = label[keep]
            level, owner = energy_targets(
                boxes, grid_size, self.stride, head.levels, head.marker_scale, head.min_radius
            )
            on = owner >= 0
            cell_label = torch.full_like(owner, -1)
            cell_label[on] = label[owner[on]]
            sides = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0) / self.stride
            size = torch.zeros((2, *grid_size), device=device)
            if on.any():
                size[:, on] = sides[owner[on]].log().T
            valid = torch.ones_like(on)
            line_map = None if line_maps is None else line_maps[i]
            if line_map is not None and line_map.any():
                valid = on | ~_cell_mask(line_map.to(device), grid_size, self.stride)
            levels.append(level)
            labels.append(cell_label)
            sizes.append(size)
            valids.append(valid)
        return torch.stack(levels), torch.stack(labels), torch.stack(sizes), torch.stack(valids)

    def loss(
        self,
        energy: Tensor,
        classes: Tensor,
        size: Tensor,
        targets: Sequence[dict[str, Tensor]],
        image_size: Size,
        line_maps: Sequence[Tensor | None] | None = None,
    ) -> dict[str, Tensor]:
        """DWD's losses: softmax cross-entropy over the energy levels on the valid cells
        (background and object cells balanced by ``head.object_weight``), class cross-entropy on
        object cells, smooth-L1 of the log box size on object cells.

        Returns ``loss`` (weighted sum), ``energy_loss``, ``cls_loss``, ``size_loss``,
        ``loc_loss`` (= energy + size, the localisation part) and ``num_pos`` (object cells).
        """
        self._check_grid(energy, image_size)
        grid = (int(energy.shape[-2]), int(energy.shape[-1]))
        level_t, label_t, size_t, valid = self.build_targets(
            targets, grid, energy.device, line_maps
        )
        energy = energy.float()
        ce = F.cross_entropy(energy, level_t, reduction="none")
        on = level_t > 0
        energy_loss = self._energy_loss(ce, on, valid)
        num_pos = on.sum()
        if num_pos > 0:
            pred = size.float().permute(0, 2, 3, 1)[on]
            size_loss = F.smooth_l1_loss(pred, size_t.permute(0, 2, 3, 1)[on], beta=1.0 / 9)
            if classes.shape[1]:
                logits = classes.float().permute(0, 2, 3, 1)[on]
                cls_loss = F.cross_entropy(logits, label_t[on] - 1)
            else:
                cls_loss = energy.new_zeros(())
        else:  # no object in the batch: only the energy map learns (everything background)
            size_loss = size.float().sum() * 0.0
            cls_loss = classes.float().sum() * 0.0
        head = self.head
        loss = (
            head.energy_weight * energy_loss
            + head.class_weight * cls_loss
            + head.size_weight * size_loss
        )
        return {
            "loss": loss,
            "energy_loss": energy_loss.detach(),
            "cls_loss": cls_loss.detach(),
            "size_loss": size_loss.detach(),
            "loc_loss": (energy_loss + size_loss).detach(),
            "num_pos": num_pos,
        }

    def _energy_loss(self, ce: Tensor, on: Tensor, valid: Tensor) -> Tensor:
        """Mean cross-entropy over the valid cells (``object_weight`` None, DWD's), or
        ``(1 − w)`` × the background cells' mean + ``w`` × the object cells' mean: sparse objects
        (music symbols on a white page) are not drowned by background cells."""
        weight = self.head.object_weight
        if weight is None:
            return ce[valid].sum() / valid.sum().clamp(min=1)
        background, objects = valid & ~on, valid & on
        loss = ce.new_zeros(())
        if background.any():
            loss = loss + (1.0 - weight) * ce[background].mean()
        if objects.any():
            loss = loss + weight * ce[objects].mean()
        return loss

    def _check_grid(self, energy: Tensor, image_size: Size) -> None:
        expected = tuple(math.ceil(int(v) / self.stride) for v in image_size)
        if tuple(energy.shape[-2:]) != expected:
            raise ValueError(
                f"energy maps of size {tuple(energy.shape[-2:])} do not fit an input of size "
                f"{tuple(image_size)} at stride {self.stride} (expected {expected}); pass the "
                "(H, W) of the batch the model saw"
            )

    # -- inference --------------------------------------------------------------------------------
    def raw_outputs(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(energy_probs, class_probs, size)``: :meth:`forward` with softmaxes applied."""
        energy, classes, size = self(images)
        return energy.float().softmax(dim=1), classes.float().softmax(dim=1), size.float()

    def postprocess(
        self, energy: Tensor, classes: Tensor, size: Tensor, image_size: Size, **decode_kwargs: Any
    ) -> list[Detections]:
        """:meth:`decode` of raw :meth:`forward` outputs."""
        self._check_grid(energy, image_size)
        return self.decode(
            energy.float().softmax(dim=1),
            classes.float().softmax(dim=1),
            size.float(),
            **decode_kwargs,
        )

    def detect(self, images: Tensor, **decode_kwargs: Any) -> list[Detections]:
        """Eval-mode :meth:`raw_outputs` + :meth:`decode` without autograd."""
        with eval_mode(self), torch.inference_mode():
            return self.decode(*self.raw_outputs(images), **decode_kwargs)

    def decode(
        self,
        energy_probs: Tensor,
        class_probs: Tensor,
        size: Tensor,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.5,
        pre_nms_topk: int | None = None,
        max_detections: int | None = None,
        class_agnostic_nms: float | None = None,
    ) -> list[Detections]:
        """Per-image detections ``{"boxes"[D, 4], "scores"[D], "labels"[D]}``, best first.

        One box per energy component with up to ``head.top_k`` classes each (score >
        ``score_thresh``); per-class "+1" NMS at ``nms_thresh`` (components may still give
        overlapping boxes), then the optional caps, as the anchor detectors' decoding.
        """
        return [
            decode_energy(
                energy_probs[i],
                class_probs[i],
                size[i],
                self.stride,
                self.head,
                score_thresh=score_thresh,
                nms_thresh=nms_thresh,
                pre_nms_topk=pre_nms_topk,
                max_detections=max_detections,
                class_agnostic_nms=class_agnostic_nms,
            )
            for i in range(energy_probs.shape[0])
        ]

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def energy_components(
    energy_probs: Tensor, cut_level: int, min_pixels: int = 1, cut_on: str = "argmax"
) -> tuple[np.ndarray, int, np.ndarray, Tensor]:
    """Label the cells whose energy is ``>= cut_level`` into 8-connected components: the
    argmax level (DWD's cut) or, ``cut_on="expected"``, the expected level under the softmax
    (it keeps cells where the network hesitates between levels around the cut).

    Returns ``(labels[h, w]`` (0 background, 1..n), ``n``, the component index of each kept
    component (1-based, those with at least ``min_pixels`` cells), the expected energy map
    ``[h, w]`` normalised to 0..1).
    """
    num_levels = energy_probs.shape[0]
    steps = torch.arange(num_levels, dtype=energy_probs.dtype, device=energy_probs.device)
    expected = (energy_probs * steps[:, None, None]).sum(dim=0) / (num_levels - 1)
    if cut_on == "expected":
        mask = (expected * (num_levels - 1) >= cut_level).cpu().numpy()
    else:
        mask = (energy_probs.argmax(dim=0) >= cut_level).cpu().numpy()
    labels, count = ndimage.label(mask, structure=_EIGHT)
    if count == 0:
        return labels, 0, np.zeros(0, dtype=np.int64), expected
    cells = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    kept = np.flatnonzero(cells >= min_pixels) + 1
    return labels, int(count), kept, expected


def decode_energy(
    energy_probs: Tensor,
    class_probs: Tensor,
    size: Tensor,
    stride: int,
    head: WatershedHead,
    score_thresh: float = 0.01,
    nms_thresh: float = 0.5,
    pre_nms_topk: int | None = None,
    max_detections: int | None = None,
    class_agnostic_nms: float | None = None,
) -> Detections:
    """Boxes of one image from its maps (``energy_probs[K, h, w]``, ``class_probs[C-1, h, w]``
    with C-1 = 0 for a localiser, ``size[2, h, w]``); see :class:`WatershedDetector`.

    Vectorised: component statistics come from :func:`numpy.bincount` and
    :func:`scipy.ndimage.maximum_position` over the label image, the class vote from one
    ``index_add`` over the component cells.
    """
    device = energy_probs.device
    labels, count, kept, expected = energy_components(
        energy_probs.float().cpu(), head.cut_level, head.min_pixels, head.cut_on
    )
    empty = {
        "boxes": torch.zeros((0, 4), device=device),
        "scores": torch.zeros(0, device=device),
        "labels": torch.zeros(0, dtype=torch.long, device=device),
    }
    if len(kept) == 0:
        return empty
    width = labels.shape[1]
    flat = labels.ravel()
    cells = np.flatnonzero(flat)
    member = flat[cells] - 1  # 0-based component of every labelled cell
    counts = np.bincount(member, minlength=count).astype(np.float64)
    rows, cols = np.divmod(cells, width)
    centre_y = (np.bincount(member, weights=rows, minlength=count) / counts + 0.5) * stride
    centre_x = (np.bincount(member, weights=cols, minlength=count) / counts + 0.5) * stride
    expected_np = expected.numpy()
    peak = np.asarray(ndimage.maximum(expected_np, labels, kept), dtype=np.float64).reshape(-1)
    peak_at = np.asarray(ndimage.maximum_position(expected_np, labels, kept)).reshape(-1, 2)
    index = kept - 1
    log_size = size.float().cpu()[:, peak_at[:, 0], peak_at[:, 1]]  # [2, n]
    sides = log_size.clamp(max=12.0).exp() * stride
    cx = torch.from_numpy(centre_x[index]).float()
    cy = torch.from_numpy(centre_y[index]).float()
    boxes = torch.stack(
        [cx - sides[0] / 2, cy - sides[1] / 2, cx + sides[0] / 2, cy + sides[1] / 2], dim=1
    )
    peak_t = torch.from_numpy(peak).float()
    num_fg = class_probs.shape[0]
    if num_fg == 0:
        scores, classes = peak_t[:, None], torch.ones((len(kept), 1), dtype=torch.long)
    else:
        probs = class_probs.float().cpu()
        if head.class_from == "vote":
            flat_probs = probs.reshape(num_fg, -1)[:, torch.from_numpy(cells)].T  # [cells, C-1]
            sums = torch.zeros((count, num_fg)).index_add_(0, torch.from_numpy(member), flat_probs)
            component_probs = (
                sums[torch.from_numpy(index)] / torch.from_numpy(counts[index])[:, None].float()
            )
        else:
            component_probs = probs[:, peak_at[:, 0], peak_at[:, 1]].T
        top_p, top_c = component_probs.topk(min(head.top_k, num_fg), dim=1)
        scores, classes = peak_t[:, None] * top_p, top_c + 1
    k = scores.shape[1]
    scores, classes = scores.reshape(-1), classes.reshape(-1)
    all_boxes = boxes.repeat_interleave(k, dim=0)
    keep = scores > score_thresh
    all_boxes, scores, classes = all_boxes[keep], scores[keep], classes[keep]
    if pre_nms_topk is not None and scores.numel() > pre_nms_topk:
        top = scores.topk(pre_nms_topk).indices
        all_boxes, scores, classes = all_boxes[top], scores[top], classes[top]
    order = nms_and_caps(all_boxes, scores, classes, nms_thresh, class_agnostic_nms, max_detections)
    return {
        "boxes": all_boxes[order].to(device),
        "scores": scores[order].to(device),
        "labels": classes[order].to(device),
    }
