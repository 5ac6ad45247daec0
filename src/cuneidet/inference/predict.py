"""Sign detection on photographs: normalisation, whole-image or tiled inference, batch prediction.

The paper feeds the **whole scaled segment** to the detector at once (batch 1, arbitrary size, no
padding; method-detector.md §1.7). :func:`detect_image` does exactly that whenever the image fits
(``max_pixels``). Larger images are cut into overlapping tiles:

* tile origins and the step between tiles are multiples of the detector's largest stride (32 or
  64), so every tile sees the same anchor grid and the same receptive-field phase as the whole
  image would;
* neighbouring tiles overlap by ``tile_overlap`` pixels; the overlap is split in the middle, which
  partitions the image into disjoint "core" regions, one per tile;
* a detection is kept only by the tile whose core contains its box centre (a sign cut by a tile
  edge has its truncated box centre near that edge, i.e. outside that tile's core, as long as the
  sign is smaller than the overlap), boxes are shifted back to image coordinates;
* finally per-class greedy NMS with the legacy "+1" IoU (``nms_plus_one``) runs across all tiles,
  so a sign on a tile border that two tiles both keep (centres predicted on both sides of the
  split) is still reported once.

All boxes are ``[x1, y1, x2, y2]`` float pixels of the image given to :func:`detect_image` (the
scaled segment). :func:`predict_photos` maps them back to the original photograph
(``box / scale + segment origin``) and keeps the scaled copy in ``sx1..sy2``. No flips or flip
test-time augmentation anywhere: cuneiform signs are chiral.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from cuneidet.data.datasets import to_input_tensor
from cuneidet.data.detection_files import prediction_frame
from cuneidet.data.segments import crop_segment, extract_segment, scaled_to_photo
from cuneidet.data.sources import to_8bit
from cuneidet.errors import ConfigError, ImageLoadError
from cuneidet.inference.scale import ScaleEstimationError, ScaleSettings, estimate_scale
from cuneidet.models.box_coder import nms_plus_one
from cuneidet.models.detector import eval_mode

log = logging.getLogger(__name__)

#: Tile side used when :func:`detect_image` switches to tiling on its own (scaled pixels).
DEFAULT_TILE_SIZE = 2048
#: Largest stride assumed when the detector does not expose ``fpn.strides``.
DEFAULT_MAX_STRIDE = 64

Detections = dict[str, Tensor]


# --------------------------------------------------------------------------- normalisation


def to_tensor(image: Image.Image) -> Tensor:
    """Grayscale float tensor ``[1, H, W]`` with ``x = pixel / 255 - 0.5`` (method §0).

    Any PIL mode is converted to ``"L"`` first; see :func:`cuneidet.data.datasets.to_input_tensor`.
    """
    if image.mode != "L":
        image = image.convert("L")
    return to_input_tensor(np.asarray(image))


# --------------------------------------------------------------------------- single image


def detect_image(
    detector: Any,
    image: Image.Image,
    *,
    tile_size: int | None = None,
    tile_overlap: int = 256,
    max_pixels: int = 16_000_000,
    device: str | torch.device | None = None,
    **detect_kwargs: Any,
) -> Detections:
    """Detect signs on one image at working (scaled) resolution.

    Whole-image inference (the paper's way) unless ``tile_size`` is given or the image has more
    than ``max_pixels`` pixels, in which case tiles of ``tile_size`` (default
    :data:`DEFAULT_TILE_SIZE`) overlapping by ``tile_overlap`` are used (see the module doc).
    ``device`` defaults to the detector's device. ``detect_kwargs`` go to ``detector.detect``
    (``score_thresh``, ``nms_thresh``, ...). Returns CPU tensors ``boxes [D, 4]`` (float32, xyxy,
    pixels of ``image``), ``scores [D]`` and ``labels [D]`` (int64 train labels).

    ``image`` is at the CSDD scale (signs ≈ 128 px high). A detector trained at another working
    scale (its ``sign_height`` attribute, from the checkpoint) sees the image resized to it, and
    its boxes are mapped back to ``image`` pixels.
    """
    factor = float(getattr(detector, "sign_height", 128.0)) / 128.0
    if abs(factor - 1.0) > 1e-6:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        dets = _detect_at_scale(
            detector, small, tile_size, tile_overlap, max_pixels, device, detect_kwargs
        )
        scale = torch.tensor(
            [image.width / size[0], image.height / size[1]] * 2, dtype=dets["boxes"].dtype
        )
        return {**dets, "boxes": dets["boxes"] * scale}
    return _detect_at_scale(
        detector, image, tile_size, tile_overlap, max_pixels, device, detect_kwargs
    )


def _detect_at_scale(
    detector: Any,
    image: Image.Image,
    tile_size: int | None,
    tile_overlap: int,
    max_pixels: int,
    device: str | torch.device | None,
    detect_kwargs: dict[str, Any],
) -> Detections:
    width, height = image.size
    if tile_size is None and width * height > max_pixels:
        tile_size = DEFAULT_TILE_SIZE
        log.info(
            "image %dx%d has more than %d pixels: tiled inference (%d px tiles)",
            width,
            height,
            max_pixels,
            tile_size,
        )
    device = _resolve_device(detector, device)
    with eval_mode(detector), torch.inference_mode():
        if tile_size is None:
            return _detect_whole(detector, image, device, detect_kwargs)
        return _detect_tiled(detector, image, tile_size, tile_overlap, device, detect_kwargs)


def _detect_whole(
    detector: Any, image: Image.Image, device: torch.device, kwargs: dict[str, Any]
) -> Detections:
    batch = to_tensor(image).unsqueeze(0).to(device)
    return _to_cpu(detector.detect(batch, **kwargs)[0])


def _detect_tiled(
    detector: Any,
    image: Image.Image,
    tile_size: int,
    tile_overlap: int,
    device: torch.device,
    kwargs: dict[str, Any],
) -> Detections:
    stride = max_stride(detector)
    size, overlap = _aligned_tiling(tile_size, tile_overlap, stride)
    width, height = image.size
    xs, ys = tile_starts(width, size, overlap), tile_starts(height, size, overlap)
    log.debug("tiling %dx%d into %dx%d tiles of %d px", width, height, len(xs), len(ys), size)
    parts = []
    for row, y0 in enumerate(ys):
        for col, x0 in enumerate(xs):
            tile = image.crop((x0, y0, min(x0 + size, width), min(y0 + size, height)))
            dets = _detect_whole(detector, tile, device, kwargs)
            dets["boxes"] = dets["boxes"] + dets["boxes"].new_tensor([x0, y0, x0, y0])
            core_x = _core_interval(xs, col, overlap)
            core_y = _core_interval(ys, row, overlap)
            parts.append(_select(dets, _centres_in(dets["boxes"], core_x, core_y)))
    merged = {key: torch.cat([p[key] for p in parts]) for key in ("boxes", "scores", "labels")}
    if len(parts) > 1:
        merged = _merge_across_tiles(merged, kwargs)
    return merged


def max_stride(detector: Any) -> int:
    """Largest feature stride of ``detector`` (its ``strides`` or ``fpn.strides``),
    :data:`DEFAULT_MAX_STRIDE` else."""
    strides = getattr(detector, "strides", None) or getattr(
        getattr(detector, "fpn", None), "strides", None
    )
    return int(max(strides)) if strides else DEFAULT_MAX_STRIDE


def _aligned_tiling(tile_size: int, tile_overlap: int, stride: int) -> tuple[int, int]:
    """Round the tile size down and the overlap up to multiples of ``stride``."""
    size = max(stride, tile_size // stride * stride)
    overlap = math.ceil(max(tile_overlap, 0) / stride) * stride
    if overlap >= size:
        raise ConfigError(
            f"tile_overlap ({tile_overlap}, {overlap} after alignment to stride {stride}) must be "
            f"smaller than tile_size ({tile_size}, {size} after alignment)"
        )
    if (size, overlap) != (tile_size, tile_overlap):
        log.debug("tiling aligned to stride %d: size %d, overlap %d", stride, size, overlap)
    return size, overlap


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets ``0, step, 2·step, ...`` (step = size − overlap) until a tile reaches the end.

    The last tile is clipped to the image (not shifted back), so every start stays a multiple of
    the step and therefore of the detector stride; it is still wider than ``overlap``.
    """
    step = size - overlap
    starts = [0]
    while starts[-1] + size < length:
        starts.append(starts[-1] + step)
    return starts


def _core_interval(starts: Sequence[int], index: int, overlap: int) -> tuple[float, float]:
    """Half-open core ``[lo, hi)`` of tile ``index``: overlaps are split in their middle."""
    lo = -math.inf if index == 0 else starts[index] + overlap / 2
    hi = math.inf if index == len(starts) - 1 else starts[index + 1] + overlap / 2
    return lo, hi


def _centres_in(boxes: Tensor, core_x: tuple[float, float], core_y: tuple[float, float]) -> Tensor:
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx >= core_x[0]) & (cx < core_x[1]) & (cy >= core_y[0]) & (cy < core_y[1])


def _merge_across_tiles(dets: Detections, kwargs: Mapping[str, Any]) -> Detections:
    """Per-class "+1" NMS across tiles, then the optional class-agnostic NMS and cap."""
    if len(dets["scores"]) == 0:
        return dets
    nms_thresh = kwargs.get("nms_thresh", 0.5)
    keep = nms_plus_one(dets["boxes"], dets["scores"], dets["labels"], nms_thresh)
    dets = _select(dets, keep)
    agnostic = kwargs.get("class_agnostic_nms")
    if agnostic is not None:
        everything = torch.zeros_like(dets["labels"])
        dets = _select(dets, nms_plus_one(dets["boxes"], dets["scores"], everything, agnostic))
    order = torch.argsort(dets["scores"], descending=True)
    cap = kwargs.get("max_detections")
    if cap is not None:
        order = order[: int(cap)]
    return _select(dets, order)


def _select(dets: Detections, index: Tensor) -> Detections:
    return {key: dets[key][index] for key in ("boxes", "scores", "labels")}


def _to_cpu(dets: Mapping[str, Tensor]) -> Detections:
    return {
        "boxes": dets["boxes"].detach().to("cpu", torch.float32).reshape(-1, 4),
        "scores": dets["scores"].detach().to("cpu", torch.float32).reshape(-1),
        "labels": dets["labels"].detach().to("cpu", torch.int64).reshape(-1),
    }


def _resolve_device(detector: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if not isinstance(detector, nn.Module):  # e.g. an ONNX Runtime detector: CPU tensors
        return torch.device("cpu")
    param = next(iter(detector.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


# --------------------------------------------------------------------------- photographs


@dataclass
class PhotoRequest:
    """One detection job: a photograph (or one segment of it) at a given scale.

    ``name`` is the tablet id / image name written as ``imageName``. ``image`` may be ``None``:
    the photo is then loaded lazily from ``path`` (a load failure is skipped and counted).
    ``bbox`` is the segment ``(x0, y0, x1, y1)`` in the photo (``None`` = whole photo); the
    segment is cropped and resized by ``scale`` (the working resolution, signs ≈ 128 px high).
    ``scale=None`` estimates it from the segment (:func:`cuneidet.inference.scale.estimate_scale`).
    """

    name: str
    image: Image.Image | None = None
    scale: float | None = 1.0
    bbox: tuple[float, float, float, float] | None = None
    path: str | Path | None = None
    segm_idx: int = -1
    folder: str = ""


def predict_photos(
    detector: Any,
    requests: Iterable[PhotoRequest],
    progress: bool = True,
    scale_settings: ScaleSettings | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Detect signs on many photographs; one row per detection (columns
    :data:`PREDICTION_COLUMNS`).

    ``x1..y2`` are in the original photo frame (``scaled / scale + segment origin``), ``sx1..sy2``
    in the scaled segment frame the detector saw. ``kwargs`` go to :func:`detect_image`. A
    request with ``scale=None`` gets its scale estimated (``scale_settings``). A photo that fails
    to load, or whose scale cannot be estimated, is skipped with a warning; ``df.attrs`` holds
    ``n_requests``, ``n_failed``, ``failed`` (names), ``images`` (COCO-style
    ``id/file_name/width/height`` of each photo) and ``scales`` (per request: the scale used,
    whether it was estimated, and the estimate's response and box count).
    """
    total = len(requests) if isinstance(requests, Sized) else None
    frames: list[pd.DataFrame] = []
    failed: list[str] = []
    images: dict[str, dict[str, Any]] = {}
    scales: list[dict[str, Any]] = []
    n_requests = 0
    cache = _PhotoCache()
    bar = tqdm(requests, total=total, disable=not progress, desc="detect", unit="segment")
    for request in bar:
        n_requests += 1
        try:
            photo = cache.get(request)
        except ImageLoadError as error:
            failed.append(request.name)
            log.warning("skipping %s: %s", request.name, error)
            bar.set_postfix(failed=len(failed))
            continue
        try:
            request, scale_record = _with_scale(detector, request, photo, scale_settings)
        except ScaleEstimationError as error:
            failed.append(request.name)
            log.warning("skipping %s: %s", request.name, error)
            bar.set_postfix(failed=len(failed))
            continue
        scales.append(scale_record)
        images.setdefault(request.name, _image_entry(len(images) + 1, request.name, photo))
        frames.append(_predict_one(detector, request, photo, kwargs))
    if failed:
        log.warning(
            "%d of %d photos/segments skipped (photo unreadable or no sign scale found)",
            len(failed),
            n_requests,
        )
    frame = _concat(frames)
    frame.attrs.update(
        n_requests=n_requests,
        n_failed=len(failed),
        failed=failed,
        images=list(images.values()),
        scales=scales,
    )
    return frame


def _with_scale(
    detector: Any,
    request: PhotoRequest,
    photo: Image.Image,
    settings: ScaleSettings | None,
) -> tuple[PhotoRequest, dict[str, Any]]:
    """The request with its scale (estimated when ``request.scale`` is None) and a record."""
    record: dict[str, Any] = {"name": request.name, "segm_idx": request.segm_idx}
    if request.scale is not None:
        return request, {**record, "scale": float(request.scale), "auto": False}
    segment = crop_segment(photo, request.bbox if request.bbox is not None else (0, 0, *photo.size))
    estimate = estimate_scale(detector, segment, settings)
    log.info(
        "%s: estimated scale %.3f (response %.2f)", request.name, estimate.scale, estimate.response
    )
    record.update(scale=estimate.scale, auto=True, response=estimate.response, boxes=estimate.boxes)
    return replace(request, scale=estimate.scale), record


def predict_paths(
    detector: Any,
    paths: Sequence[str | Path],
    scale: float | Mapping[str, float] = 1.0,
    progress: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`predict_photos` on whole photographs loaded from ``paths``.

    ``scale`` is one factor for all photos or a mapping from photo name (file stem) to factor;
    a name missing from the mapping is a configuration error raised before any work starts.
    Unreadable photos are skipped and counted (see :func:`predict_photos`).
    """
    paths = [Path(p) for p in paths]
    if isinstance(scale, Mapping):
        missing = sorted({p.stem for p in paths} - set(scale))
        if missing:
            raise ConfigError(
                f"no scale for {len(missing)} photo(s), e.g. {missing[:5]}; "
                "add them to the scale mapping or pass one float for all photos"
            )
    requests = [
        PhotoRequest(
            name=p.stem,
            path=p,
            scale=float(scale[p.stem] if isinstance(scale, Mapping) else scale),
        )
        for p in paths
    ]
    return predict_photos(detector, requests, progress=progress, **kwargs)


def load_photo(path: str | Path) -> Image.Image:
    """Open and fully decode a photograph; any failure becomes :class:`ImageLoadError`.

    16-bit and 32-bit photos come back as 8-bit grayscale (:func:`to_8bit`): Pillow's own
    conversion to ``L`` would clip them white.
    """
    try:
        with Image.open(path) as handle:
            handle.load()
            return to_8bit(handle.copy())
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageLoadError(
            f"cannot load photo {path}: {error}; give a complete JPEG, PNG or TIFF photograph"
        ) from error


class _PhotoCache:
    """Keeps the last loaded photo so that several segments of one photo load it once."""

    def __init__(self) -> None:
        self._key: Path | None = None
        self._photo: Image.Image | None = None

    def get(self, request: PhotoRequest) -> Image.Image:
        if request.image is not None:
            return request.image
        if request.path is None:
            raise ImageLoadError(f"request {request.name!r} has neither an image nor a path")
        key = Path(request.path)
        if key != self._key or self._photo is None:
            self._key, self._photo = None, None  # never keep a stale photo after a failure
            self._photo, self._key = load_photo(key), key
        return self._photo


def _predict_one(
    detector: Any, request: PhotoRequest, photo: Image.Image, kwargs: dict[str, Any]
) -> pd.DataFrame:
    """Crop + scale the segment, detect, and map the boxes back to the photo."""
    bbox = request.bbox if request.bbox is not None else (0, 0, *photo.size)
    segment = extract_segment(photo, bbox, request.scale)
    dets = detect_image(detector, segment, **kwargs)
    scaled = dets["boxes"].numpy().astype(np.float64)
    photo_boxes = np.asarray(scaled_to_photo(scaled, bbox, request.scale), dtype=np.float64)
    return detections_frame(
        request, dets["labels"].numpy(), dets["scores"].numpy(), photo_boxes, scaled
    )


def detections_frame(
    request: PhotoRequest,
    labels: np.ndarray,
    scores: np.ndarray,
    photo_boxes: np.ndarray,
    scaled_boxes: np.ndarray,
) -> pd.DataFrame:
    """The detections of one request as rows of :data:`PREDICTION_COLUMNS`."""
    return prediction_frame(
        labels,
        scores,
        photo_boxes,
        scaled_boxes,
        name=request.name,
        scale=float(request.scale),
        folder=request.folder,
        image_path=str(request.path or ""),
        segm_idx=request.segm_idx,
    )


def _image_entry(image_id: int, name: str, photo: Image.Image) -> dict[str, Any]:
    width, height = photo.size
    return {"id": image_id, "file_name": name, "width": width, "height": height}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        empty = np.zeros((0, 4))
        return detections_frame(PhotoRequest(name=""), np.zeros(0), np.zeros(0), empty, empty)
    return pd.concat(frames, ignore_index=True)
