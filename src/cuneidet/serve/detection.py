"""The app's detector: which model, loading it once, and turning its detections into signs.

A detector returns one row per (box, class); a two-stage recogniser repeats each box for its
top-k classes, a one-stage detector keeps near-identical boxes of different classes. The app
shows one **sign** per box: rows are grouped class-agnostically (same box, or IoU ≥
:data:`GROUP_IOU` with a stronger box) and each sign keeps its best ``top_k`` classes. Signs are
then numbered by text line (:func:`assign_lines`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

from cuneidet.data.crops import box_iou
from cuneidet.deploy.runtime import InferenceModel, load_inference_model
from cuneidet.deploy.sidecar import file_sha256, read_sidecar
from cuneidet.errors import ConfigError, CuneidetError, DataNotFoundError, ImageLoadError
from cuneidet.inference.predict import PhotoRequest, load_photo, predict_photos
from cuneidet.inference.scale import ScaleSettings, estimate_scale
from cuneidet.lines.truth import truth_from_boxes
from cuneidet.serve.settings import ServeSettings

log = logging.getLogger(__name__)

#: rows whose boxes overlap this much (IoU) with a stronger box are classes of the same sign
GROUP_IOU = 0.7
#: signs at or above this score define the text lines; weaker ones join the nearest line
LINE_SCORE = 0.3
#: a two-stage recogniser's classes of a box are kept down to this score (its top-k list)
TOPK_SCORE = 1e-4

Progress = Callable[[float, str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class SignClass:
    label: int
    name: str
    mzl: int
    glyph: str

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "name": self.name, "mzl": self.mzl, "glyph": self.glyph}


@dataclass
class LoadedModel:
    """A loaded detector with its classes (from the sidecar)."""

    model: InferenceModel
    path: Path
    kind: str
    classes: dict[int, SignClass] = field(default_factory=dict)

    def sign_class(self, label: int) -> SignClass:
        return self.classes.get(label) or SignClass(label, f"sign_{label}", -1, "")


def classes_from_sidecar(meta: Mapping[str, Any]) -> dict[int, SignClass]:
    """Every class 1…num_classes-1 with the name, MZL number and glyph the sidecar gives."""
    known = meta.get("classes") or {}
    table = {}
    for label in range(1, int(meta["num_classes"])):
        entry = known.get(str(label)) or known.get(label) or {}
        table[label] = SignClass(
            label,
            str(entry.get("name") or f"sign_{label}"),
            int(entry.get("mzl", -1)),
            str(entry.get("glyph") or ""),
        )
    return table


def load_model(path: Path, settings: ServeSettings) -> LoadedModel:
    """The export ``path`` in ONNX Runtime with the app's inference settings."""
    meta = read_sidecar(path)
    recogniser = None
    if meta["kind"] == "two_stage":  # name every box with the app's top-k classes
        recogniser = {"top_k": settings.top_k, **settings.recogniser}
    model = load_inference_model(
        "onnx",
        model=path,
        threads=settings.threads,
        inference=dict(settings.inference),
        recogniser=recogniser,
    )
    return LoadedModel(model, path, str(meta["kind"]), classes_from_sidecar(meta))


# --------------------------------------------------------------------------- choosing a model


def resolve_model_file(settings: ServeSettings) -> Path:
    """The ONNX export to serve: ``model_file``; else ``ckpt_path`` exported into the model
    cache; else the newest export or sign-detector checkpoint under ``search_dir``."""
    if settings.model_file is not None:
        if not settings.model_file.is_file():
            raise DataNotFoundError(
                f"serve.model_file={settings.model_file} does not exist; export a model with "
                "cuneidet-export or leave model_file empty to use the newest trained one"
            )
        return settings.model_file
    if settings.ckpt_path is not None:
        return export_checkpoint(settings.ckpt_path, settings.model_dir)
    if settings.search_dir is None or not settings.search_dir.is_dir():
        raise DataNotFoundError(
            f"no detector: serve.search_dir={settings.search_dir} does not exist; train one "
            "(make train) or set serve.model_file=<file.onnx> / serve.ckpt_path=<best.ckpt>"
        )
    for candidate in _newest_first(settings.search_dir, settings.model_dir):
        try:
            if candidate.suffix == ".onnx":
                read_sidecar(candidate)
                return candidate
            return export_checkpoint(candidate, settings.model_dir)
        except CuneidetError as error:
            log.info("not a servable detector: %s (%s)", candidate, error)
    raise DataNotFoundError(
        f"no exported model or sign-detector checkpoint under {settings.search_dir}; train one "
        "(make train) or set serve.model_file=<file.onnx> / serve.ckpt_path=<best.ckpt>"
    )


def _newest_first(search_dir: Path, model_dir: Path) -> list[Path]:
    exports = [
        p
        for p in search_dir.rglob("*.onnx")
        if not p.name.endswith(".classifier.onnx") and p.with_suffix(".json").is_file()
    ]
    checkpoints = list(search_dir.rglob("checkpoints/best.ckpt"))
    found = [p for p in exports + checkpoints if model_dir not in p.parents]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def export_checkpoint(ckpt_path: Path, model_dir: Path) -> Path:
    """Export a checkpoint once into ``model_dir/<sha256[:16]>/sign.onnx`` (cached)."""
    from cuneidet.deploy.export import export_onnx  # lazy: pulls in the training stack
    from cuneidet.models.checkpoint import load_module

    if not ckpt_path.is_file():
        raise DataNotFoundError(f"serve.ckpt_path={ckpt_path} does not exist")
    target = model_dir / file_sha256(ckpt_path)[:16] / "sign.onnx"
    if target.with_suffix(".json").is_file():
        return target
    log.info("exporting %s for serving → %s", ckpt_path, target)
    module = load_module(ckpt_path)
    classes = _csdd_classes(module.detector.num_classes)
    export_onnx(
        module.detector,
        target,
        inference=dict(module.inference),
        classes=classes,
        source={"checkpoint": str(ckpt_path), "checkpoint_sha256": file_sha256(ckpt_path)},
    )
    return target


def _csdd_classes(num_classes: int) -> dict[int, dict[str, Any]] | None:
    """Names, MZL numbers and glyphs from the CSDD meta files when a data folder is found."""
    from cuneidet.data.csdd import CSDD
    from cuneidet.data.location import resolve_data_dir

    try:
        labels = CSDD(resolve_data_dir(None)).labels
    except (CuneidetError, OSError):
        return None
    return {
        c: {"name": labels.name(c), "mzl": labels.mzl(c), "glyph": labels.glyph(c)}
        for c in range(1, num_classes)
        if c in labels.label_to_mzl
    }


class ModelHolder(Generic[T]):
    """Loads a model once (in the background at start) and remembers why it failed; ``what``
    names it in messages."""

    def __init__(self, loader: Callable[[], T], what: str = "the detector") -> None:
        self._loader = loader
        self.what = what
        self._lock = threading.Lock()
        self._loaded: T | None = None
        self.error: str | None = None
        self.loading = False

    def get(self) -> T:
        """The model; raises :class:`ConfigError` with the load error when it cannot load."""
        with self._lock:
            if self._loaded is None:
                self.loading = True
                try:
                    self._loaded = self._loader()
                    self.error = None
                except (CuneidetError, OSError, RuntimeError) as error:
                    self.error = f"{self.what} failed to load: {error}"
                    log.error("%s", self.error)
                    raise ConfigError(self.error) from error
                finally:
                    self.loading = False
            return self._loaded

    @property
    def loaded(self) -> T | None:
        return self._loaded

    def start_loading(self) -> None:
        def load() -> None:
            with contextlib.suppress(ConfigError):  # kept in self.error, shown by /api/status
                self.get()

        threading.Thread(target=load, name="cuneidet-model-load", daemon=True).start()


# --------------------------------------------------------------------------- running


@dataclass
class PhotoDetections:
    scale: float
    scale_auto: float | None
    signs: list[dict[str, Any]]


def detect_photo(
    loaded: LoadedModel,
    path: Path,
    scale: float | None,
    settings: ServeSettings,
    progress: Progress,
) -> PhotoDetections:
    """Detect the signs of the photo at ``path``; ``scale=None`` estimates it first."""
    progress(0.05, "loading the photo")
    photo = load_photo(path)
    scale_auto = None
    detector = loaded.model.detector
    if scale is None:
        progress(0.15, "estimating the sign scale")
        scale_auto = estimate_scale(detector, photo, ScaleSettings(**_scale_settings(loaded))).scale
        scale = scale_auto
    progress(0.35, f"detecting signs at scale {scale:.2f}")
    # a recogniser's weaker classes of a box stay (its top-k); a detector's rows are boxes
    floor = TOPK_SCORE if loaded.kind == "two_stage" else settings.min_score
    kwargs = {**loaded.model.inference, "score_thresh": floor}
    frame = predict_photos(
        detector, [PhotoRequest(name=path.stem, image=photo, scale=scale)], progress=False, **kwargs
    )
    if frame.attrs.get("n_failed"):
        raise ImageLoadError(f"detection failed on {path.name}")
    progress(0.9, "grouping signs into lines")
    signs = [s for s in group_signs(frame, settings.top_k) if s["score"] >= settings.min_score]
    lines = assign_lines(
        np.array([[s["x1"], s["y1"], s["x2"], s["y2"]] for s in signs]),
        np.array([s["score"] for s in signs]),
    )
    for sign, line in zip(signs, lines, strict=True):
        sign["line"] = int(line)
    return PhotoDetections(float(scale), scale_auto, signs)


def _scale_settings(loaded: LoadedModel) -> dict[str, Any]:
    chosen = dict(loaded.model.scale_auto)
    if "candidates" in chosen:
        chosen["candidates"] = tuple(float(c) for c in chosen["candidates"])
    return chosen


def group_signs(frame: pd.DataFrame, top_k: int) -> list[dict[str, Any]]:
    """One sign per box (see the module doc), strongest first: ``x1…y2``, ``label``,
    ``score`` (of the best class) and ``topk`` ``[[label, score], …]``."""
    if not len(frame):
        return []
    frame = frame.sort_values("det_score", ascending=False, kind="stable")
    boxes = frame[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
    labels = frame["train_label"].to_numpy(np.int64)
    scores = frame["det_score"].to_numpy(np.float64)
    unique, first, owner = np.unique(
        np.round(boxes, 3), axis=0, return_index=True, return_inverse=True
    )
    order = np.argsort(first)  # distinct boxes, strongest first
    unique, first = unique[order], first[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    owner = rank[owner.reshape(-1)]
    group = _overlap_groups(boxes[first], GROUP_IOU)[owner]
    signs: dict[int, dict[str, Any]] = {}
    for row in range(len(frame)):
        sign = signs.get(int(group[row]))
        if sign is None:
            x1, y1, x2, y2 = (float(v) for v in boxes[row])
            sign = {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "label": int(labels[row])}
            sign.update(score=float(scores[row]), topk=[])
            signs[int(group[row])] = sign
        known = {entry[0] for entry in sign["topk"]}
        if int(labels[row]) not in known and len(sign["topk"]) < top_k:
            sign["topk"].append([int(labels[row]), round(float(scores[row]), 6)])
    return list(signs.values())


def _overlap_groups(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy class-agnostic grouping of boxes sorted strongest first: each box joins the first
    stronger group leader it overlaps with IoU ≥ ``threshold``, else leads a new group."""
    count = len(boxes)
    iou = box_iou(boxes, boxes)
    group = np.full(count, -1)
    for i in range(count):
        if group[i] >= 0:
            continue
        group[i] = i
        followers = (iou[i] >= threshold) & (group < 0)
        followers[: i + 1] = False
        group[followers] = i
    return group


def assign_lines(
    boxes: np.ndarray, scores: np.ndarray, min_score: float = LINE_SCORE
) -> np.ndarray:
    """1-based text line of each box, top to bottom (0: too far from every line).

    The lines are the rows of the boxes scored ≥ ``min_score`` (all boxes when fewer than 3
    are); each box joins the line passing nearest its centre, within one median sign height.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0, np.int64)
    strong = boxes[np.asarray(scores) >= min_score]
    if len(strong) < 3:
        strong = boxes
    polylines = truth_from_boxes(strong).polylines
    if not polylines:
        return np.zeros(len(boxes), np.int64)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    height = float(np.median(boxes[:, 3] - boxes[:, 1]))
    distance = np.stack(
        [np.abs(cy - np.interp(cx, line[:, 0], line[:, 1])) for line in polylines], axis=1
    )
    nearest = distance.argmin(axis=1)
    near = distance[np.arange(len(boxes)), nearest] <= height
    return np.where(near, nearest + 1, 0).astype(np.int64)


def nearest_line(existing: np.ndarray, lines: np.ndarray, box: np.ndarray) -> int:
    """The line of the existing sign whose centre is vertically nearest to ``box`` (within one
    box height), for a box drawn by hand; 0 when none is."""
    if not len(existing):
        return 0
    cy = (existing[:, 1] + existing[:, 3]) / 2
    box_cy, box_h = (box[1] + box[3]) / 2, box[3] - box[1]
    gaps = np.abs(cy - box_cy)
    best = int(gaps.argmin())
    return int(lines[best]) if gaps[best] <= box_h else 0
