"""Raw detections of detector v_k on every weak view, through Lightning's predict loop.

Whole scaled segments go through the network (the paper's way; very large views are tiled by
``detect_image``), decoded with score ≥ 0.01 and per-class NMS 0.5 (method-pipeline §1.4), and
written per view as ``<stem>.npz`` (boxes xyxy in scaled segment px, scores, labels) by a
prediction writer, atomically. With several devices Lightning's distributed sampler shares the
views out; views already written by an unfinished run are not predicted again.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from cuneidet.data.segments import PhotoCache, load_segment_image
from cuneidet.data.sources import PhotoSource
from cuneidet.errors import CuneidetError, DataNotFoundError
from cuneidet.inference.predict import detect_image
from cuneidet.pipeline.views import WeakView
from cuneidet.utils.io import write_bytes

log = logging.getLogger(__name__)

RAW_DETECTION = {"score_thresh": 0.01, "nms_thresh": 0.5, "class_agnostic_nms": None}


class ViewImages(Dataset):
    """Scaled grayscale views, loaded lazily (one photo cache per worker)."""

    def __init__(self, views: Sequence[WeakView], source: PhotoSource) -> None:
        self.views = list(views)
        self.source = source
        self._cache: PhotoCache | None = None

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> dict[str, Any]:
        view = self.views[index]
        if self._cache is None:
            self._cache = PhotoCache(self.source)
        try:
            image = load_segment_image(self._cache, view.segment)
        except CuneidetError as error:
            return {"stem": view.stem, "key": view.key, "image": None, "error": str(error)}
        return {"stem": view.stem, "key": view.key, "image": image, "error": None}


def _single(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0]


class DetectionWriter(BasePredictionWriter):
    """Writes each view's detections to ``<out_dir>/<stem>.npz``; counts photos that failed."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.failed: dict[str, str] = {}

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if prediction is None:
            self.failed[batch["key"]] = batch["error"]
            return
        write_detections(self.out_dir / f"{batch['stem']}.npz", prediction)


class ViewDetector(pl.LightningModule):
    """Predict-only wrapper: one view per step, the paper's raw-detection decoding."""

    def __init__(self, detector: Any, inference: Mapping[str, Any]) -> None:
        super().__init__()
        self.detector = detector
        self.inference = dict(inference)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, np.ndarray] | None:
        if batch["image"] is None:
            return None
        image: Image.Image = batch["image"]
        dets = detect_image(self.detector, image, device=self.device, **self.inference)
        return {key: value.numpy() for key, value in dets.items()}


def write_detections(path: Path, detections: Mapping[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        boxes=np.asarray(detections["boxes"], np.float32).reshape(-1, 4),
        scores=np.asarray(detections["scores"], np.float32).reshape(-1),
        labels=np.asarray(detections["labels"], np.int64).reshape(-1),
    )
    write_bytes(path, buffer.getvalue())


def read_detections(path: Path) -> dict[str, np.ndarray]:
    """One view's raw detections (boxes, scores, labels)."""
    if not path.is_file():
        raise DataNotFoundError(f"no detections at {path}; rerun the detect stage")
    with np.load(path) as data:
        return {key: data[key] for key in ("boxes", "scores", "labels")}


def run_detect_stage(
    views: Sequence[WeakView],
    source: PhotoSource,
    detector: Any,
    make_trainer: Callable[[list[Any]], pl.Trainer],
    out_dir: Path,
    inference: Mapping[str, Any] | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Detections of every view not yet in ``out_dir`` (a Lightning trainer from
    ``make_trainer(callbacks)`` runs the predict loop); returns counts."""
    todo = [v for v in views if not (out_dir / f"{v.stem}.npz").is_file()]
    writer = DetectionWriter(out_dir)
    if todo:
        trainer = make_trainer([writer])
        loader = DataLoader(
            ViewImages(todo, source), batch_size=1, num_workers=num_workers, collate_fn=_single
        )
        module = ViewDetector(detector, {**RAW_DETECTION, **dict(inference or {})})
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    if writer.failed:
        log.warning("detect stage: %d views whose photo failed were skipped", len(writer.failed))
    done = [v for v in views if (out_dir / f"{v.stem}.npz").is_file()]
    counts = [len(read_detections(out_dir / f"{v.stem}.npz")["scores"]) for v in done]
    return {
        "views": len(done),
        "views_failed": len(views) - len(done),
        "detections": int(sum(counts)),
        "detections_per_view": float(np.mean(counts)) if counts else 0.0,
    }


__all__ = ["RAW_DETECTION", "ViewImages", "read_detections", "run_detect_stage"]
