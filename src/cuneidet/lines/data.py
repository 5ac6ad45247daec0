"""Line-network data: augmented crops with distance-to-line maps, whole views for evaluation."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cuneidet.align import view_transliteration
from cuneidet.data.csdd import CSDD
from cuneidet.data.datamodule import split_by_tablet
from cuneidet.data.datasets import load_segment_samples
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.sources import PhotoSource, build_photo_source
from cuneidet.data.views import annotated_segments
from cuneidet.errors import ConfigError
from cuneidet.lines.truth import LineView, distance_to_lines, line_views

log = logging.getLogger(__name__)


@dataclass
class LineSample:
    """A scaled gray view with its annotated lines, and its boxes and transliteration if known."""

    key: str
    name: str
    image: np.ndarray  # uint8 [H, W]
    polylines: list[np.ndarray]
    pitch: float
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    transliteration: Any = None  # cuneidet.align.ViewTransliteration, or None
    # per truth line, the transliteration line it carries (-1: none), where known exactly
    # (forged views); real views derive it from their boxes (metrics.reference_assignment)
    reference: np.ndarray | None = None

    @property
    def tablet(self) -> str:
        """The tablet's CDLI name (``name`` is ``"tablet view"``)."""
        return self.name.split(" ")[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.image.shape[0]), int(self.image.shape[1])


def normalize(image: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W]`` → float ``[1, H, W]`` in [-0.5, 0.5] (the reference's gray convention)."""
    return torch.from_numpy(image.astype(np.float32) / 255.0 - 0.5).unsqueeze(0)


def crop_transform(
    centre: tuple[float, float], crop_size: int, zoom: float, angle_deg: float
) -> np.ndarray:
    """The 2x3 affine map from view pixels to crop pixels (zoom and rotate about ``centre``)."""
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle_deg, zoom)
    matrix[:, 2] += np.array([crop_size / 2.0 - centre[0], crop_size / 2.0 - centre[1]])
    return matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


class LineCropDataset(Dataset):
    """Random crops of the training views, each with its distance-to-line map.

    A crop is centred on a text line with probability ``line_fraction`` (a line chosen in
    proportion to its length, a point on it, shifted by up to one line pitch), elsewhere
    uniformly. Crops are zoomed by a log-uniform factor in ``zoom_range`` and rotated by up to
    ``rotation`` degrees; outside the view the crop is black, as in the reference. No flips:
    cuneiform is chiral. Randomness comes from torch's generator, so ``seed_everything`` and
    the DataLoader's per-worker seeds make it reproducible.
    """

    def __init__(
        self,
        samples: Sequence[LineSample],
        crop_size: int = 512,
        length: int = 2000,
        line_fraction: float = 0.75,
        zoom_range: Sequence[float] = (0.8, 1.25),
        rotation: float = 2.0,
        brightness: float = 0.25,
        contrast: float = 0.25,
    ) -> None:
        if not samples:
            raise ConfigError("no training views for the line network")
        self.samples = list(samples)
        self.crop_size = int(crop_size)
        self.length = int(length)
        self.line_fraction = float(line_fraction)
        self.zoom_range = (float(zoom_range[0]), float(zoom_range[1]))
        self.rotation = float(rotation)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        weights = np.array([max(1, s.image.size) for s in self.samples], np.float64)
        self.view_weights = weights / weights.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        sample = self.samples[rng.choice(len(self.samples), p=self.view_weights)]
        zoom = math.exp(rng.uniform(*np.log(self.zoom_range)))
        angle = rng.uniform(-self.rotation, self.rotation)
        matrix = crop_transform(self._centre(sample, rng), self.crop_size, zoom, angle)
        size = (self.crop_size, self.crop_size)
        image = cv2.warpAffine(sample.image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
        polylines = [transform_points(p, matrix) for p in sample.polylines]
        distance = distance_to_lines(polylines, size)
        return {
            "image": normalize(self._photometric(image, rng)),
            "distance": torch.from_numpy(distance),
        }

    def _centre(self, sample: LineSample, rng: np.random.Generator) -> tuple[float, float]:
        height, width = sample.size
        if sample.polylines and rng.random() < self.line_fraction:
            lengths = np.array([max(1.0, p[-1, 0] - p[0, 0]) for p in sample.polylines])
            line = sample.polylines[rng.choice(len(lengths), p=lengths / lengths.sum())]
            x = rng.uniform(line[0, 0], line[-1, 0])
            pitch = sample.pitch if np.isfinite(sample.pitch) else 128.0
            y = float(np.interp(x, line[:, 0], line[:, 1])) + rng.uniform(-pitch, pitch)
            return x, y
        return rng.uniform(0, width), rng.uniform(0, height)

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gain = 1.0 + rng.uniform(-self.contrast, self.contrast)
        shift = 255.0 * rng.uniform(-self.brightness, self.brightness) / 2.0
        mean = float(image.mean())
        out = (image.astype(np.float32) - mean) * gain + mean + shift
        return np.clip(out, 0, 255).astype(np.uint8)


class LineViewDataset(Dataset):
    """Whole views for validation and testing (batch size 1)."""

    def __init__(self, samples: Sequence[LineSample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        return {"image": normalize(sample.image), "sample": sample}


def collate_crops(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def collate_views(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "images": torch.stack([i["image"] for i in items]),
        "samples": [i["sample"] for i in items],
    }


class LineDataModule(pl.LightningDataModule):
    """The CSDD's annotated text lines: ``line_annotations_<train_split>`` for training (minus
    held-out validation tablets) and ``line_annotations_<test_split>`` for testing."""

    def __init__(
        self,
        data_dir: str | None = None,
        image_source: str = "folder",
        image_folder: str | None = None,
        image_source_options: Mapping[str, Any] | None = None,
        train_split: str = "train",
        test_split: str = "test",
        box_sets: Sequence[str] = ("train_full", "test_full"),
        val_fraction: float = 0.15,
        val_tablets: Sequence[str] | None = None,
        split_seed: int = 0,
        crop_size: int = 512,
        crops_per_epoch: int = 2000,
        batch_size: int = 8,
        num_workers: int = 2,
        line_fraction: float = 0.75,
        zoom_range: Sequence[float] = (0.8, 1.25),
        rotation: float = 2.0,
        brightness: float = 0.25,
        contrast: float = 0.25,
        limit_views: int | None = None,
        exclude_train_tablets: Sequence[str] = (),
        registration_fixes: bool = True,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self._csdd: CSDD | None = None
        self._source: PhotoSource | None = None
        self.train_samples: list[LineSample] | None = None
        self.val_samples: list[LineSample] | None = None
        self.test_samples: list[LineSample] | None = None

    @property
    def csdd(self) -> CSDD:
        if self._csdd is None:
            self._csdd = CSDD(
                resolve_data_dir(self.hparams.data_dir),
                registration_fixes=self.hparams.registration_fixes,
            )
        return self._csdd

    @property
    def source(self) -> PhotoSource:
        if self._source is None:
            hp = self.hparams
            self._source = build_photo_source(
                hp.image_source,
                self.csdd.data_dir,
                folder=hp.image_folder,
                **dict(hp.image_source_options or {}),
            )
        return self._source

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit", "validate") and self.train_samples is None:
            train, val = self.split_views()
            self.train_samples = self.load(train)
            self.val_samples = self.load(val)
            log.info(
                "line network: %d training views, %d validation views (left out: %s)",
                len(self.train_samples),
                len(self.val_samples),
                sorted(hp.exclude_train_tablets or ()),
            )
        if stage in (None, "test") and self.test_samples is None:
            self.test_samples = self.load(self._views(hp.test_split))

    def split_views(self) -> tuple[list[LineView], list[LineView]]:
        """The training split's views, divided into (training, validation) by tablet; the
        ``exclude_train_tablets`` are left out after the split, so that the validation tablets
        stay the same."""
        hp = self.hparams
        views = self._views(hp.train_split)
        by_segment = {v.segment.key: v for v in views}
        train, val = split_by_tablet(
            [v.segment for v in views], hp.val_fraction, hp.split_seed, hp.val_tablets
        )
        excluded = set(hp.exclude_train_tablets or ())
        return (
            [by_segment[s.key] for s in train if s.tablet not in excluded],
            [by_segment[s.key] for s in val if s.tablet not in excluded],
        )

    def _views(self, split: str) -> list[LineView]:
        views = line_views(self.csdd, split)
        if self.hparams.limit_views:
            views = views[: int(self.hparams.limit_views)]
        return views

    def load(self, views: Sequence[LineView]) -> list[LineSample]:
        """Load the views' images, boxes (from ``box_sets``) and transliterations."""
        segments = {s.key: s for s in annotated_segments(self.csdd, list(self.hparams.box_sets))}
        loaded = load_segment_samples(
            [v.segment for v in views], self.source, progress=self.hparams.progress
        )
        truths = {v.key: v for v in views}
        samples = []
        for item in loaded:
            view = truths[item.key]
            boxed = segments.get(item.key)
            samples.append(
                LineSample(
                    key=item.key,
                    name=item.name,
                    image=item.image,
                    polylines=view.truth.polylines,
                    pitch=view.truth.pitch,
                    boxes=boxed.scaled_boxes() if boxed is not None else item.boxes,
                    labels=boxed.labels if boxed is not None else item.labels,
                    transliteration=view_transliteration(
                        self.csdd,
                        view.segment.collection,
                        view.segment.segm_idx,
                        view.segment.tablet,
                    ),
                )
            )
        return samples

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        assert self.train_samples is not None, "call setup('fit') first"
        dataset = LineCropDataset(
            self.train_samples,
            crop_size=hp.crop_size,
            length=hp.crops_per_epoch,
            line_fraction=hp.line_fraction,
            zoom_range=hp.zoom_range,
            rotation=hp.rotation,
            brightness=hp.brightness,
            contrast=hp.contrast,
        )
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            shuffle=False,
            num_workers=hp.num_workers,
            collate_fn=collate_crops,
            persistent_workers=False,
        )

    def _view_loader(self, samples: list[LineSample] | None) -> DataLoader:
        assert samples is not None, "call setup() first"
        return DataLoader(LineViewDataset(samples), batch_size=1, collate_fn=collate_views)

    def val_dataloader(self) -> DataLoader:
        return self._view_loader(self.val_samples)

    def test_dataloader(self) -> DataLoader:
        return self._view_loader(self.test_samples)
