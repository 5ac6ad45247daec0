"""DeepScoresV2 (the OBB JSON schema of ``obb_anns``) as a box dataset: ``data=deepscores``.

A JSON file (``deepscores_train.json``, ``deepscores_test.json`` of ds2_dense, or the one-page
sample) lists ``categories`` (id → name and annotation set), ``images`` (file name, size, the ids
of their annotations) and ``annotations`` (``a_bbox`` = axis-aligned ``[x0, y0, x1, y1]``,
``cat_id`` = one category id per annotation set). Pages become grayscale
``SegmentSample`` objects, trained on CSDD-style tiles and evaluated whole.

Bad input is a clear error (a missing or malformed file, key or box) or a counted skip (unknown
category, dangling annotation id, missing page image, too-small object), never a silent loss.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
from tqdm.auto import tqdm

from cuneidet.data.datasets import (
    SegmentSample,
)
from cuneidet.data.location import DEFAULT_RELATIVE, ENV_VAR, repo_root
from cuneidet.data.tiled import TiledDetectionData
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError, ImageLoadError

log = logging.getLogger(__name__)

SAMPLE_FOLDER = "deepscores_v2_sample"
SCHEMA = {"annotation_sets": list, "categories": dict, "images": list, "annotations": dict}
POINT_AT = (
    "point data.data_dir at the DeepScoresV2 folder (ds2_dense: its JSON files beside images/) "
    "and data.train_json / data.test_json at its JSON files (see docs/deepscores.md)"
)
TOO_SMALL = "smaller than data.min_object_size"


@dataclass
class DeepScoresPage:
    """One page: its image file and the boxes (page pixels) and labels (1..C) it keeps."""

    file_name: str
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4] xyxy from a_bbox
    labels: np.ndarray  # int64 [N], 1..C

    @property
    def key(self) -> str:
        return Path(self.file_name).stem


@dataclass
class DeepScoresSet:
    """The pages of one JSON file, its label maps and the counted skips (reason → count)."""

    json_path: Path
    annotation_set: str
    pages: list[DeepScoresPage]
    class_names: dict[int, str]  # label → category name
    category_ids: dict[int, str]  # label → DeepScores category id
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_annotations(self) -> int:
        return sum(len(page.labels) for page in self.pages)


def read_deepscores(
    json_path: str | Path, images_dir: str | Path, annotation_set: str = "deepscores"
) -> DeepScoresSet:
    """Read a DeepScoresV2 OBB JSON; labels are the set's categories sorted by id → 1..C.

    Pages whose image is not in ``images_dir`` are skipped (an error if none is left); skipped
    annotations and pages are counted in :attr:`DeepScoresSet.skipped` and one warning.
    """
    json_path, images_dir = Path(json_path), Path(images_dir)
    data = _load_json(json_path)
    label_of = _labels(data, json_path, annotation_set)
    skipped: Counter[str] = Counter()
    details: dict[str, list[str]] = {"missing page images": [], "unknown category ids": []}
    pages: list[DeepScoresPage] = []
    seen: set[str] = set()
    for index, image in enumerate(data["images"]):
        name, width, height, ann_ids = _image_fields(image, index, json_path)
        if Path(name).stem in seen:
            raise DataFormatError(f"{json_path}: page {name} (images[{index}]) is listed twice")
        seen.add(Path(name).stem)
        if not (images_dir / name).is_file():
            skipped["page image missing"] += 1
            details["missing page images"].append(name)
            continue
        rows = []
        for ann_id in ann_ids:
            ann = data["annotations"].get(str(ann_id))
            if ann is None:
                skipped["ann_ids without annotation"] += 1
                continue
            raw = _bbox(ann, ann_id, json_path)
            if raw[2] <= raw[0] or raw[3] <= raw[1]:
                skipped["empty a_bbox (x1 <= x0 or y1 <= y0)"] += 1
                continue
            box = np.clip(raw, 0, [width, height, width, height])
            cid, unknown = _category(ann, ann_id, json_path, data["categories"], annotation_set)
            details["unknown category ids"] += unknown
            if cid is None:
                skipped[
                    "unknown category id" if unknown else f"no category in {annotation_set}"
                ] += 1
            elif box[2] <= box[0] or box[3] <= box[1]:
                skipped["outside the page"] += 1
            else:
                rows.append((*box, label_of[cid]))
        table = np.asarray(rows, np.float64).reshape(-1, 5)
        boxes, labels = table[:, :4].astype(np.float32), table[:, 4].astype(np.int64)
        pages.append(DeepScoresPage(name, images_dir / name, width, height, boxes, labels))
    if skipped:
        examples = "".join(f"; {k}: {sorted(set(v))[:5]}" for k, v in details.items() if v)
        log.warning("%s: skipped %s%s", json_path, dict(skipped), examples)
    if not pages:
        raise DataNotFoundError(
            f"{json_path}: none of its {len(data['images'])} page images is in {images_dir} "
            f"(e.g. {details['missing page images'][:3]}); set data.images_dir, or {POINT_AT}"
        )
    names = {label: str(data["categories"][cid]["name"]) for cid, label in label_of.items()}
    return DeepScoresSet(
        json_path=json_path,
        annotation_set=annotation_set,
        pages=pages,
        class_names=names,
        category_ids={label: cid for cid, label in label_of.items()},
        skipped=dict(skipped),
    )


def _labels(data: dict[str, Any], path: Path, annotation_set: str) -> dict[str, int]:
    """Category id → label 1..C of the categories of ``annotation_set``, sorted by id."""
    if annotation_set not in data["annotation_sets"]:
        raise ConfigError(
            f"{path}: data.annotation_set={annotation_set!r} is not in its key 'annotation_sets' "
            f"{data['annotation_sets']}; set data.annotation_set to one of them"
        )
    chosen = []
    for cid, category in data["categories"].items():
        if not isinstance(category, dict) or not {"name", "annotation_set"} <= category.keys():
            raise DataFormatError(f"{path}: categories[{cid!r}] needs 'name' and 'annotation_set'")
        if category["annotation_set"] == annotation_set:
            if not str(cid).isdigit():
                raise DataFormatError(f"{path}: category id {cid!r} is not an integer")
            chosen.append(str(cid))
    if not chosen:
        raise DataFormatError(f"{path}: no category of key 'categories' is in {annotation_set!r}")
    return {cid: label for label, cid in enumerate(sorted(chosen, key=int), start=1)}


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataNotFoundError(f"DeepScores annotation file {path} does not exist; {POINT_AT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(
            f"{path} is not valid JSON ({error}); use a DeepScoresV2 OBB file such as "
            "deepscores_train.json"
        ) from error
    for key, kind in SCHEMA.items():
        if not isinstance(data, dict) or not isinstance(data.get(key), kind):
            raise DataFormatError(
                f"{path}: top-level key {key!r} is missing or not a {kind.__name__}; expected the "
                f"DeepScoresV2 OBB schema (keys {sorted(SCHEMA)}); {POINT_AT}"
            )
    return data


def _image_fields(image: Any, index: int, path: Path) -> tuple[str, int, int, list[Any]]:
    keys = ("filename", "width", "height", "ann_ids")
    missing = [k for k in keys if not isinstance(image, dict) or k not in image]
    if missing:
        raise DataFormatError(f"{path}: images[{index}] lacks {missing}; every page needs {keys}")
    width, height, ann_ids = image["width"], image["height"], image["ann_ids"]
    valid = [
        isinstance(v, int | float) and math.isfinite(v) and v == int(v) > 0 for v in (width, height)
    ]
    if not all(valid):
        raise DataFormatError(f"{path}: images[{index}] has a bad size {width}x{height}")
    if not isinstance(ann_ids, list):
        raise DataFormatError(f"{path}: images[{index}]['ann_ids'] is not a list")
    return str(image["filename"]), int(width), int(height), ann_ids


def _bbox(ann: Any, ann_id: Any, path: Path) -> np.ndarray:
    if not isinstance(ann, dict) or "a_bbox" not in ann:
        raise DataFormatError(
            f"{path}: annotation {ann_id} has no 'a_bbox'; every annotation needs a_bbox "
            "[x0, y0, x1, y1] and cat_id"
        )
    try:
        box = np.asarray(ann["a_bbox"], dtype=np.float64)
    except (TypeError, ValueError):
        box = np.full(1, np.nan)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise DataFormatError(
            f"{path}: annotation {ann_id} has a malformed a_bbox {ann['a_bbox']!r}; expected 4 "
            "finite numbers [x0, y0, x1, y1]"
        )
    return box


def _category(
    ann: dict[str, Any], ann_id: Any, path: Path, categories: dict[str, Any], annotation_set: str
) -> tuple[str | None, list[str]]:
    """The annotation's category id in ``annotation_set`` (None if it has none) and the ids of
    its entries that ``categories`` does not know."""
    entries = ann.get("cat_id")
    if isinstance(entries, str | int):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise DataFormatError(
            f"{path}: annotation {ann_id} has no 'cat_id' list; expected one category id per "
            "annotation set, e.g. ['2', '138']"
        )
    ids = [str(e) for e in entries if e is not None]
    matches = sorted(
        {i for i in ids if categories.get(i, {}).get("annotation_set") == annotation_set}
    )
    if len(matches) > 1:
        raise DataFormatError(
            f"{path}: annotation {ann_id} has several {annotation_set} categories {matches}"
        )
    return (matches[0] if matches else None), [i for i in ids if i not in categories]


def default_data_dir() -> Path:
    """``<CUNEIDET_DATA_DIR or ../shared/data>/deepscores_v2_sample`` (cwd, then the repo root)."""
    env = os.environ.get(ENV_VAR, "").strip()
    bases = [Path(env)] if env else [Path.cwd() / DEFAULT_RELATIVE]
    root = repo_root()
    if not env and root is not None:
        bases.append(root / DEFAULT_RELATIVE)
    tried = [(base / SAMPLE_FOLDER).expanduser().resolve() for base in bases]
    for folder in tried:
        if folder.is_dir():
            return folder
    raise DataNotFoundError(
        f"data.data_dir is not set and no {SAMPLE_FOLDER}/ was found ({[str(t) for t in tried]}); "
        f"{POINT_AT}"
    )


def split_pages(
    samples: Sequence[SegmentSample], val_fraction: float, seed: int = 0
) -> tuple[list[SegmentSample], list[SegmentSample]]:
    """Hold out ``val_fraction`` of the pages (at least one page trains), deterministically.

    A single page is both the training and the validation page (smoke-test mode)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    if len(samples) == 1:
        return list(samples), list(samples)
    count = min(math.ceil(val_fraction * len(samples)), len(samples) - 1)
    held_out = set(np.random.default_rng(seed).permutation(len(samples))[:count].tolist())
    train = [s for i, s in enumerate(samples) if i not in held_out]
    return train, [s for i, s in enumerate(samples) if i in held_out]


class DeepScoresDataModule(TiledDetectionData, pl.LightningDataModule):
    """DeepScoresV2 pages → CSDD-style training tiles; whole pages for validation and test.

    ``min_object_size`` (pixels after ``scale``) drops objects whose longer side is smaller, with
    a counted warning; keep it at least the detector's output stride, below which an object has
    no anchor of its own. ``limit_segments`` keeps the first pages of each JSON file (debugging,
    ``debug=limit``). ``sign_height`` is accepted (``cuneidet-eval`` passes the checkpoint's)
    but unused: pages are resized by ``scale``.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        train_json: str | None = "deepscores_v2_sample.json",
        test_json: str | None = "deepscores_v2_sample.json",
        images_dir: str = "images",
        annotation_set: str = "deepscores",
        train_sets: Sequence[str] | None = None,
        test_sets: Sequence[str] | None = None,
        scale: float = 1.0,
        min_object_size: float = 8.0,
        num_classes: int = 137,
        class_agnostic: bool = False,
        val_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 4,
        num_workers: int = 1,
        pin_memory: bool = False,
        tile_size: int = 600,
        input_size: int = 512,
        tile_offset: int = 100,
        tile_step_x: int = 300,
        tile_step_y: int = 400,
        small_segments: str = "whole",
        crop_scale: Sequence[float] = (0.65, 1.0),
        max_aspect: float = 1.35,
        jitter_p: float = 0.5,
        brightness: float = 0.5,
        contrast: float = 0.5,
        progress: bool = True,
        limit_segments: int | None = None,
        sign_height: float | None = None,
    ) -> None:
        super().__init__()
        if not float(scale) > 0:
            raise ConfigError(f"data.scale must be > 0 (a page resize factor), got {scale}")
        if float(min_object_size) < 0:
            raise ConfigError(f"data.min_object_size must be >= 0 pixels, got {min_object_size}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if class_agnostic and num_classes != 2:
            raise ConfigError(
                f"data.class_agnostic=true trains a localiser with one object class, but the "
                f"model has num_classes={num_classes}; set model.detector.num_classes=2"
            )
        self.save_hyperparameters(logger=False)
        self.hparams.train_sets = list(
            train_sets or ([Path(train_json).stem] if train_json else [])
        )
        self.hparams.test_sets = list(test_sets or ([Path(test_json).stem] if test_json else []))
        self.sets: dict[Path, DeepScoresSet] = {}
        self._loaded: dict[Path, list[SegmentSample]] = {}
        self.skipped: dict[str, int] = {}
        self.train_samples: list[SegmentSample] | None = None
        self.val_samples: list[SegmentSample] | None = None
        self.test_samples: list[SegmentSample] | None = None

    # -- files ------------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The DeepScores folder: data.data_dir, else the sample in the shared data folder."""
        configured = self.hparams.data_dir
        if configured is None or not str(configured).strip():
            return default_data_dir()
        root = Path(configured).expanduser().resolve()
        if not root.is_dir():
            raise DataNotFoundError(f"data.data_dir={configured} is not a folder; {POINT_AT}")
        return root

    def _path(self, name: str | None, key: str) -> Path:
        if not name:
            raise ConfigError(f"data.{key} is not set; name a DeepScores JSON file")
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.root / path

    def read(self, key: str = "train_json") -> DeepScoresSet:
        """The :class:`DeepScoresSet` of ``data.<key>``, read once; its classes are checked."""
        path = self._path(self.hparams[key], key)
        if path not in self.sets:
            found = read_deepscores(
                path, self._path(self.hparams.images_dir, "images_dir"), self.hparams.annotation_set
            )
            self._check_classes(found)
            self.sets[path] = found
            for reason, count in found.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
        return self.sets[path]

    def _check_classes(self, found: DeepScoresSet) -> None:
        other = next(iter(self.sets.values()), None)
        if other is not None and other.category_ids != found.category_ids:
            raise DataFormatError(
                f"{found.json_path} and {other.json_path} number the {found.annotation_set} "
                "categories differently; use train and test files of the same release"
            )
        count = 1 if self.hparams.class_agnostic else len(found.class_names)
        if self.hparams.num_classes < count + 1:
            raise ConfigError(
                f"{found.json_path.name} has {count} {found.annotation_set} categories but the "
                f"model has num_classes={self.hparams.num_classes}; set "
                f"model.detector.num_classes={count + 1} (categories + background)"
            )

    def _samples(self, key: str) -> list[SegmentSample]:
        """The pages of ``data.<key>`` as grayscale samples resized by data.scale (loaded once)."""
        found = self.read(key)
        if found.json_path not in self._loaded:
            samples = [
                self._load_page(page, found.json_path)
                for page in tqdm(
                    found.pages[: self.hparams.limit_segments or None],
                    desc="loading pages",
                    disable=not self.hparams.progress,
                )
            ]
            small = sum(int(s.meta.pop("too_small")) for s in samples)
            if small:
                self.skipped[TOO_SMALL] = self.skipped.get(TOO_SMALL, 0) + small
                log.warning(
                    "%s: skipped %d objects whose longer side is < data.min_object_size=%s px",
                    found.json_path.name,
                    small,
                    self.hparams.min_object_size,
                )
            self._loaded[found.json_path] = samples
        return self._loaded[found.json_path]

    def _load_page(self, page: DeepScoresPage, json_path: Path) -> SegmentSample:
        image = cv2.imread(str(page.path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ImageLoadError(f"{page.path} (listed in {json_path}) is not a readable image")
        if image.shape != (page.height, page.width):
            raise DataFormatError(
                f"{page.path} is {image.shape[1]}x{image.shape[0]} px but {json_path.name} says "
                f"{page.width}x{page.height}; its boxes would not fit"
            )
        scale = float(self.hparams.scale)
        if scale != 1.0:
            size = (max(1, round(page.width * scale)), max(1, round(page.height * scale)))
            image = cv2.resize(
                image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            )
        boxes = page.boxes * np.float32(scale)
        keep = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= float(
            self.hparams.min_object_size
        )
        labels = np.ones_like(page.labels) if self.hparams.class_agnostic else page.labels
        return SegmentSample(
            key=page.key,
            name=page.key,
            image=np.ascontiguousarray(image, dtype=np.uint8),
            boxes=boxes[keep],
            labels=labels[keep],
            meta={
                "collection": json_path.stem,
                "segm_idx": 0,
                "tablet": page.key,
                "view": "page",
                "bbox": (0.0, 0.0, float(page.width), float(page.height)),
                "scale": scale,
                "too_small": int((~keep).sum()),
            },
        )

    # -- Lightning hooks --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit", "validate") and self.train_samples is None:
            pages = self._samples("train_json")
            self.train_samples, self.val_samples = split_pages(pages, hp.val_fraction, hp.seed)
            if len(pages) == 1:
                log.info("one training page: it is also the validation page (smoke-test mode)")
            log.info(
                "training on %d pages, validating on %d",
                len(self.train_samples),
                len(self.val_samples),
            )
        if stage in (None, "test") and self.test_samples is None:
            test_path = self._path(hp.test_json, "test_json")
            if hp.train_json and test_path == self._path(hp.train_json, "train_json"):
                log.info("data.test_json is data.train_json: testing on the training pages")
            self.test_samples = self._samples("test_json")

    def class_names(self) -> dict[int, str]:
        """label → category name for reports (``{1: "object"}`` when class-agnostic)."""
        if self.hparams.class_agnostic:
            return {1: "object"}
        return dict(self.read("train_json" if self.hparams.train_json else "test_json").class_names)
