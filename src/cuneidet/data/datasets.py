"""Torch datasets: scaled segments held in memory, the paper's training tiles, whole segments."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from tqdm.auto import tqdm

from cuneidet.data.line_geometry import LineCells
from cuneidet.data.segments import extract_segment
from cuneidet.data.sources import PhotoSource
from cuneidet.data.tiling import Tile
from cuneidet.data.transforms import seed_pipeline
from cuneidet.data.views import AnnotatedSegment
from cuneidet.errors import CuneidetError, ImageLoadError

log = logging.getLogger(__name__)


@dataclass
class SegmentSample:
    """One scaled grayscale segment with its boxes in scaled pixels."""

    key: str
    name: str
    image: np.ndarray  # uint8 [H, W]
    boxes: np.ndarray  # float32 [N, 4] xyxy, scaled segment pixels
    labels: np.ndarray  # int64 [N] train_label (0 and out-of-range labels kept)
    meta: dict[str, Any] = field(default_factory=dict)
    # text-line cells of a view with generated (incomplete) labels: low-IoU anchors on its
    # lines are ignored in training; None for views with complete manual boxes
    line_cells: LineCells | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in scaled pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def load_segment_samples(
    segments: Sequence[AnnotatedSegment],
    source: PhotoSource,
    progress: bool = True,
    scale_factor: float = 1.0,
) -> list[SegmentSample]:
    """Crop, scale and grayscale every segment; each photograph is decoded once.

    ``scale_factor`` multiplies the CSDD's per-segment scale (signs ≈ 128 px high): 0.5 gives
    64-px signs (``data.sign_height=64``); boxes and ``meta["scale"]`` follow.

    A photograph that cannot be loaded skips its segments with a counted warning; if nothing is
    left the error says which photographs failed.
    """
    by_tablet: dict[str, list[AnnotatedSegment]] = {}
    for segment in segments:
        by_tablet.setdefault(segment.tablet, []).append(segment)
    samples: dict[str, SegmentSample] = {}
    failures: dict[str, str] = {}
    for tablet, group in tqdm(
        by_tablet.items(), desc="loading photos", unit="photo", disable=not progress
    ):
        try:
            photo = source.load(tablet)
        except ImageLoadError as error:
            failures[tablet] = str(error)
            continue
        for segment in group:
            scale = float(segment.scale) * scale_factor
            image = extract_segment(photo, segment.bbox, scale)
            boxes = np.asarray(segment.scaled_boxes(), np.float64).reshape(-1, 4) * scale_factor
            samples[segment.key] = SegmentSample(
                key=segment.key,
                name=segment.name,
                image=np.asarray(image, dtype=np.uint8),
                boxes=boxes.astype(np.float32),
                labels=np.asarray(segment.labels, dtype=np.int64),
                meta={
                    "collection": segment.collection,
                    "segm_idx": segment.segm_idx,
                    "tablet": segment.tablet,
                    "view": segment.view,
                    "bbox": tuple(segment.bbox),
                    "scale": scale,
                },
            )
    if failures:
        skipped = sum(len(by_tablet[t]) for t in failures)
        log.warning(
            "skipped %d segments of %d photographs that could not be loaded: %s",
            skipped,
            len(failures),
            "; ".join(f"{t}: {r}" for t, r in list(failures.items())[:3]),
        )
    if segments and not samples:
        raise CuneidetError(
            f"none of the {len(by_tablet)} photographs could be loaded from {source.describe()}; "
            f"first error: {next(iter(failures.values()))}"
        )
    return [samples[s.key] for s in segments if s.key in samples]


def to_input_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W] (or [H, W, 1]) → float [1, H, W] normalised as pixel/255 − 0.5.

    The project's single input normalisation (``ToTensor`` + ``Normalize(0.5, 1.0)`` of the
    reference code, bit-identical in float32).
    """
    array = np.asarray(image, dtype=np.float32).reshape(image.shape[0], image.shape[1])
    return torch.from_numpy(array / np.float32(255.0) - np.float32(0.5)).unsqueeze(0)


class TileDataset(Dataset):
    """Augmented training tiles (one item per tile, as the reference index does)."""

    def __init__(
        self,
        samples: Sequence[SegmentSample],
        tiles: Sequence[Tile],
        transform: A.Compose,
        num_classes: int = 240,
    ) -> None:
        self.samples = list(samples)
        self.tiles = list(tiles)
        self.transform = transform
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        tile = self.tiles[index]
        sample = self.samples[tile.segment]
        crop = sample.image[tile.y0 : tile.y0 + tile.height, tile.x0 : tile.x0 + tile.width]
        keep = tile.contains_centres(sample.boxes) & (sample.labels < self.num_classes)
        boxes = sample.boxes[keep] - np.array([tile.x0, tile.y0, tile.x0, tile.y0], np.float32)
        boxes = np.clip(boxes, 0, [tile.width, tile.height, tile.width, tile.height])
        labels = sample.labels[keep]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out = self.transform(
            image=crop[..., None],
            mask=_tile_line_mask(sample, tile, crop.shape),
            bboxes=boxes[valid],
            labels=labels[valid],
        )
        return {
            "image": to_input_tensor(out["image"]),
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(out["labels"], np.int64).reshape(-1)),
            "line_map": torch.from_numpy(np.asarray(out["mask"]) > 0),
            "key": sample.key,
        }


def _tile_line_mask(sample: SegmentSample, tile: Tile, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 [h, w]: 1 on the view's text lines inside the tile (all 0 without line cells)."""
    height, width = shape[:2]
    if sample.line_cells is None:
        return np.zeros((height, width), np.uint8)
    return sample.line_cells.window(tile.y0, tile.x0, height, width).astype(np.uint8)


class SegmentDataset(Dataset):
    """Whole scaled segments for validation, test and prediction (batch size 1)."""

    def __init__(self, samples: Sequence[SegmentSample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        return {
            "image": to_input_tensor(sample.image),
            "boxes": torch.tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(sample.labels, dtype=torch.int64).reshape(-1),
            "key": sample.key,
            "index": index,
        }


def collate_detection(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images (same size) and keep per-image targets as lists."""
    batch = {
        "images": torch.stack([item["image"] for item in items]),
        "targets": [{"boxes": item["boxes"], "labels": item["labels"]} for item in items],
        "keys": [item["key"] for item in items],
        "indices": [item.get("index", -1) for item in items],
    }
    if all("line_map" in item for item in items):
        batch["line_maps"] = [item["line_map"] for item in items]
    return batch


def seed_worker_transform(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed the albumentations pipeline of this worker.

    albumentations 2.0.8 ignores the torch/numpy seeds, so without this every worker would replay
    the same augmentation stream. The torch worker seed differs per worker and per epoch and is
    itself derived from the seed given to ``seed_everything``.
    """
    cv2.setNumThreads(0)  # loader workers share the cores with torch: no OpenCV thread pool
    info = get_worker_info()
    if info is None:
        return
    dataset = info.dataset
    transform = getattr(dataset, "transform", None)
    if isinstance(transform, A.BaseCompose):
        seed_pipeline(transform, info.seed % 2**32)
