"""LightningDataModule over the CSDD: training tiles, validation/test segments."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

from cuneidet.data.csdd import CSDD
from cuneidet.data.datasets import (
    SegmentSample,
    load_segment_samples,
)
from cuneidet.data.generated import generated_segments, read_generated, read_line_cells
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.segments import view_stem
from cuneidet.data.sources import PhotoSource, build_photo_source
from cuneidet.data.tiled import TiledDetectionData
from cuneidet.data.views import AnnotatedSegment, annotated_segments
from cuneidet.errors import ConfigError

log = logging.getLogger(__name__)


def split_by_tablet(
    segments: Sequence[AnnotatedSegment],
    val_fraction: float,
    seed: int = 0,
    val_tablets: Sequence[str] | None = None,
) -> tuple[list[AnnotatedSegment], list[AnnotatedSegment]]:
    """Hold out whole tablets (all their views) for validation, deterministically."""
    tablets = sorted({s.tablet for s in segments})
    if val_tablets:
        unknown = sorted(set(val_tablets) - set(tablets))
        if unknown:
            raise ConfigError(
                f"data.val_tablets names tablets not in the training sets: {unknown}; "
                f"choose from {tablets[:10]}..."
            )
        held_out = set(val_tablets)
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        count = math.ceil(val_fraction * len(tablets)) if val_fraction > 0 else 0
        order = np.random.default_rng(seed).permutation(len(tablets))
        held_out = {tablets[i] for i in order[:count]}
    train = [s for s in segments if s.tablet not in held_out]
    val = [s for s in segments if s.tablet in held_out]
    return train, val


class CSDDDataModule(TiledDetectionData, pl.LightningDataModule):
    """Real CSDD photographs → paper tiles for training, whole segments for evaluation.

    The validation split is a held-out set of *training* tablets; ``test_sets`` are only used by
    ``trainer.test`` and never for model selection.

    Weak supervision: ``generated`` names generated-annotation CSVs (aligned and placed signs of
    the weak pipeline) whose views are trained on too, each with its text-line cells from
    ``generated_line_dir`` so that unlabelled anchors on text lines are ignored. With
    ``train_on_boxes=False`` the real ``train_sets`` only provide the validation tablets (the
    weak-only setting); generated views of validation or test tablets are always left out.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        image_source: str = "folder",
        image_folder: str | None = None,
        image_source_options: Mapping[str, Any] | None = None,
        test_image_source: str | None = None,
        forge_train_collections: Sequence[str] = (),
        train_sets: Sequence[str] = ("train_full",),
        test_sets: Sequence[str] = ("test_full",),
        val_fraction: float = 0.15,
        val_tablets: Sequence[str] | None = None,
        split_seed: int = 0,
        num_classes: int = 240,
        batch_size: int = 32,
        num_workers: int = 2,
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
        limit_segments: int | None = None,
        exclude_train_tablets: Sequence[str] = (),
        registration_fixes: bool = True,
        generated: Sequence[str] = (),
        generated_line_dir: str | None = None,
        min_align_ratio: float = 0.2,
        train_on_boxes: bool = True,
        sign_height: float = 128.0,
        class_agnostic: bool = False,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if not train_sets and not test_sets:
            raise ConfigError("data.train_sets and data.test_sets are both empty; name a box set")
        if not 16 <= float(sign_height) <= 256:
            raise ConfigError(
                f"data.sign_height={sign_height}: signs are ~128 px high at the CSDD scale; "
                "choose a working height between 16 and 256 (e.g. 64)"
            )
        if class_agnostic and num_classes != 2:
            raise ConfigError(
                f"data.class_agnostic=true trains a localiser with one sign class, but the model "
                f"has num_classes={num_classes}; set model.detector.num_classes=2"
            )
        self.save_hyperparameters(logger=False)
        self.train_segments: list[AnnotatedSegment] = []
        self.val_segments: list[AnnotatedSegment] = []
        self.test_segments: list[AnnotatedSegment] = []
        self.train_samples: list[SegmentSample] | None = None
        self.val_samples: list[SegmentSample] | None = None
        self.test_samples: list[SegmentSample] | None = None
        self._csdd: CSDD | None = None
        self._sources: dict[str, PhotoSource] = {}

    # -- construction helpers -------------------------------------------------------------------
    @property
    def csdd(self) -> CSDD:
        if self._csdd is None:
            self._csdd = CSDD(
                resolve_data_dir(self.hparams.data_dir),
                registration_fixes=self.hparams.registration_fixes,
            )
        return self._csdd

    def photo_source(self, kind: str | None = None) -> PhotoSource:
        """The photo source ``kind`` (default ``data.image_source``), built once.

        ``data.image_source_options`` go to ``data.image_source`` only.
        """
        kind = kind or self.hparams.image_source
        if kind not in self._sources:
            options = self.hparams.image_source_options or {}
            self._sources[kind] = build_photo_source(
                kind,
                self.csdd.data_dir,
                folder=self.hparams.image_folder,
                **(dict(options) if kind == self.hparams.image_source else {}),
            )
        return self._sources[kind]

    @property
    def source(self) -> PhotoSource:
        """Where training and validation photos come from (``data.image_source``)."""
        return self.photo_source()

    @property
    def test_source(self) -> PhotoSource:
        """Where test photos come from: ``data.test_image_source``, else ``data.image_source``."""
        return self.photo_source(self.hparams.test_image_source)

    def _select(self, sets: Sequence[str]) -> list[AnnotatedSegment]:
        segments = annotated_segments(self.csdd, list(sets))
        if self.hparams.limit_segments:
            segments = segments[: int(self.hparams.limit_segments)]
        return segments

    @property
    def scale_factor(self) -> float:
        """Working scale relative to the CSDD's (signs ≈ 128 px high): sign_height / 128."""
        return float(self.hparams.sign_height) / 128.0

    def _load(
        self, segments: Sequence[AnnotatedSegment], source: PhotoSource | None = None
    ) -> list[SegmentSample]:
        samples = load_segment_samples(
            segments,
            source or self.source,
            progress=self.hparams.progress,
            scale_factor=self.scale_factor,
        )
        if self.hparams.class_agnostic:
            # a localiser: every annotated box is a sign of class 1, whatever its label
            for sample in samples:
                sample.labels = np.ones_like(sample.labels)
        return samples

    @property
    def test_segments_skipped(self) -> int:
        """Test segments left out because their photograph could not be loaded (counted in
        ``metrics.json``, so that a mAP over fewer views does not pass unnoticed)."""
        if self.test_samples is None:
            return 0
        return len(self.test_segments) - len(self.test_samples)

    # -- Lightning hooks --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit", "validate") and self.train_samples is None:
            if not hp.train_sets:
                raise ConfigError("data.train_sets is empty: training needs at least one box set")
            segments = self._select(hp.train_sets)
            train, val = split_by_tablet(segments, hp.val_fraction, hp.split_seed, hp.val_tablets)
            # left out after the split, so that the validation tablets stay the same
            excluded = set(hp.exclude_train_tablets or ())
            self.train_segments = [s for s in train if s.tablet not in excluded]
            self.val_segments = [s for s in val if s.tablet not in excluded]
            if excluded:
                left_out = len(train) + len(val) - len(self.train_segments) - len(self.val_segments)
                log.info("left out %d segments of %s", left_out, sorted(excluded))
            overlap = {s.tablet for s in self.train_segments} & self._test_tablets()
            if overlap:
                raise ConfigError(
                    f"tablets {sorted(overlap)[:5]} are in both data.train_sets and "
                    "data.test_sets; choose disjoint sets"
                )
            if hp.train_on_boxes and not (
                self.train_segments or hp.generated or hp.forge_train_collections
            ):
                raise ConfigError(
                    f"data.train_sets={list(hp.train_sets)} hold no boxes on assigned segments "
                    "outside the validation and excluded tablets; choose box sets with boxes "
                    "(e.g. train_full) or give generated labels (data.generated)"
                )
            if not hp.train_on_boxes:
                self.train_segments = []
            self.train_samples = self._load(self.train_segments)
            if hp.generated:
                self.train_samples += self._generated_train_samples()
            if not self.train_samples:
                raise ConfigError(
                    "nothing to train on: data.train_on_boxes=false and no generated view left; "
                    "check data.generated"
                )
            if hp.forge_train_collections:
                self.train_samples += self._forge_train_samples(overlap_check=self._test_tablets())
            self.val_samples = self._load(self.val_segments)
            log.info(
                "training on %d segments, validating on %d segments (%d tablets held out)",
                len(self.train_samples),
                len(self.val_samples),
                len({s.tablet for s in self.val_segments}),
            )
        if stage in (None, "test") and self.test_samples is None:
            if not hp.test_sets:
                raise ConfigError("data.test_sets is empty: testing needs at least one box set")
            self.test_segments = self._select(hp.test_sets)
            self.test_samples = self._load(self.test_segments, self.test_source)

    def forge_options(self) -> dict[str, Any]:
        """The forge settings of this data: the photo source's options when it is ``forge`` or
        ``folder+forge``, the defaults otherwise."""
        hp = self.hparams
        forge_kinds = ("forge", "folder+forge")
        options = dict(hp.image_source_options or {}) if hp.image_source in forge_kinds else {}
        options.pop("extensions", None)
        return options

    def _forge_train_samples(self, overlap_check: set[str]) -> list[SegmentSample]:
        """Supervised-on-forge: forged views of data.forge_train_collections, truth as labels."""
        hp = self.hparams
        source = build_photo_source("forge", self.csdd.data_dir, **self.forge_options())
        held_out = overlap_check | {s.tablet for s in self.val_segments}
        segments = source.truth_segments(
            list(hp.forge_train_collections), exclude_tablets=held_out, progress=hp.progress
        )
        self.train_segments += segments
        return self._load(segments, source)

    def _generated_train_samples(self) -> list[SegmentSample]:
        """Views of the generated CSVs (minus validation, test and excluded tablets), with the
        text-line cells of ``generated_line_dir``."""
        hp = self.hparams
        rows = read_generated(list(hp.generated), hp.min_align_ratio, hp.num_classes)
        segments = generated_segments(self.csdd, rows)
        held_out = self._test_tablets() | {s.tablet for s in self.val_segments}
        held_out |= set(hp.exclude_train_tablets or ())
        kept = [s for s in segments if s.tablet not in held_out]
        if len(kept) < len(segments):
            log.info(
                "generated labels: left out %d views of validation/test/excluded tablets",
                len(segments) - len(kept),
            )
        samples = self._load(kept)
        if hp.generated_line_dir:
            attach_line_cells(samples, Path(hp.generated_line_dir))
        else:
            log.warning(
                "data.generated_line_dir is not set: anchors on unlabelled text lines of the "
                "generated views are trained as background"
            )
        self.train_segments += kept
        boxes = sum(len(s.labels) for s in samples)
        log.info("generated labels: %d views, %d boxes", len(samples), boxes)
        return samples

    def _test_tablets(self) -> set[str]:
        if not self.hparams.test_sets:
            return set()
        return {s.tablet for s in annotated_segments(self.csdd, list(self.hparams.test_sets))}

    def class_names(self) -> dict[int, str]:
        """train_label → sign name for reports."""
        labels = self.csdd.labels
        return {c: labels.name(c) for c in range(1, self.hparams.num_classes)}


def attach_line_cells(samples: Sequence[SegmentSample], line_dir: Path) -> None:
    """Give every sample the line cells its line stage wrote (``<stem>.json`` + ``.npz``).

    A view without line artifacts, or whose recorded image size differs from the loaded view
    (another scale or registration), keeps none: its anchors on text lines are trained as
    background; both are counted in one warning.
    """
    missing, mismatched = [], []
    for sample in samples:
        path = line_dir / f"{view_stem(sample.key, sample.name)}.json"
        if not path.is_file():
            missing.append(sample.key)
            continue
        size = tuple(json.loads(path.read_text())["image_size"])
        if size != sample.image.shape[:2]:
            mismatched.append(sample.key)
            continue
        sample.line_cells = read_line_cells(path)
    if missing or mismatched:
        log.warning(
            "%d generated views have no line artifacts in %s and %d were lined at another size; "
            "they train without the text-line ignore rule: %s",
            len(missing),
            line_dir,
            len(mismatched),
            ", ".join((missing + mismatched)[:5]),
        )
