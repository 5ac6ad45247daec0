"""``cuneidet-predict``: detect signs on photographs → paper-format CSV and COCO JSON."""

from __future__ import annotations

import glob
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from cuneidet.cli.common import task_wrapper
from cuneidet.config import config_dir
from cuneidet.data.csdd import CSDD
from cuneidet.data.detection_files import write_coco_json, write_paper_csv
from cuneidet.data.labels import LabelMap
from cuneidet.data.location import resolve_data_dir
from cuneidet.deploy.runtime import InferenceModel, load_inference_model
from cuneidet.errors import ConfigError, CuneidetError, DataFormatError, DataNotFoundError
from cuneidet.inference.predict import PhotoRequest, predict_photos
from cuneidet.inference.scale import ScaleSettings
from cuneidet.utils.io import check_writable, write_csv, write_json
from cuneidet.utils.provenance import save_config

log = logging.getLogger("cuneidet.predict")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def expand_inputs(inputs: Any) -> list[Path]:
    """Files, folders (their images) and glob patterns → sorted, de-duplicated image paths.

    A path that does not exist or a pattern that matches nothing is a :class:`DataNotFoundError`
    (a typo must not give an empty result); unreadable photos are skipped later, counted.
    """
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    paths: list[Path] = []
    for item in items:
        item = str(item)
        if glob.has_magic(item):
            matches = [Path(m) for m in sorted(glob.glob(item))]
            if not matches:
                raise DataNotFoundError(
                    f"inputs: the pattern {item} matches no file; check the folder and the "
                    "pattern (quote it on the command line: 'inputs=[photos/*.jpg]')"
                )
        elif not Path(item).exists():
            raise DataNotFoundError(
                f"inputs: {item} does not exist; give photo files, folders of photos or glob "
                "patterns (inputs=[photos/a.jpg,more_photos/])"
            )
        else:
            matches = [Path(item)]
        for match in matches:
            if match.is_dir():
                paths += sorted(p for p in match.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            else:
                paths.append(match)
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise ConfigError(
            f"inputs={items} hold no photographs ({', '.join(sorted(IMAGE_SUFFIXES))}); give "
            "photo files, folders of photos or glob patterns"
        )
    return unique


SCALES_FORMAT = "expected columns name,scale[,x0,y0,x1,y1] (one row per photo)"
BBOX_COLUMNS = ("x0", "y0", "x1", "y1")


def read_scales(path: str | Path) -> dict[str, dict[str, Any]]:
    """scales_csv: columns ``name,scale`` and optionally a segment ``x0,y0,x1,y1`` per row.

    Every problem is a :class:`DataFormatError` naming the file and line: a missing column, a
    photo named twice, a scale that is not a positive number or ``auto``, a bbox that is not
    four numbers (leave all four empty for the whole photo).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"scales_csv={path} does not exist; {SCALES_FORMAT}")
    try:
        frame = pd.read_csv(path, dtype={"name": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataFormatError(
            f"{path}: cannot be read as CSV ({error}); {SCALES_FORMAT}"
        ) from error
    missing = {"name", "scale"} - set(frame.columns)
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {sorted(missing)}; {SCALES_FORMAT}, found "
            f"{list(frame.columns)}"
        )
    present = [c for c in BBOX_COLUMNS if c in frame.columns]
    if present and len(present) < len(BBOX_COLUMNS):
        raise DataFormatError(
            f"{path}: has bbox column(s) {present} but not all of {list(BBOX_COLUMNS)}; "
            "give all four or none"
        )
    rows: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for number, row in enumerate(frame.to_dict("records"), start=2):
        name = str(row["name"])
        if name in lines:
            raise DataFormatError(
                f"{path}: photo {name!r} is named on line {lines[name]} and again on line "
                f"{number}; keep one row per photo"
            )
        lines[name] = number
        try:
            scale = parse_scale(row["scale"], f"{path}: line {number}")
        except ConfigError as error:
            raise DataFormatError(str(error)) from error
        bbox = _bbox_of(row, path, number) if present else None
        rows[name] = {"scale": scale, "bbox": bbox}
    return rows


def _bbox_of(row: dict[str, Any], path: Path, number: int) -> tuple[float, ...] | None:
    values = [row[c] for c in BBOX_COLUMNS]
    if all(pd.isna(v) for v in values):
        return None  # the whole photo
    try:
        bbox = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        bbox = (float("nan"),)
    if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
        shown = ", ".join(f"{c}={v!r}" for c, v in zip(BBOX_COLUMNS, values, strict=True))
        raise DataFormatError(
            f"{path}: line {number} has a bad segment bbox ({shown}); give four pixel numbers "
            "x0,y0,x1,y1 or leave all four empty for the whole photo"
        )
    return bbox


def parse_scale(value: Any, where: str = "scale") -> float | None:
    """A positive number, or ``auto`` (returned as None: estimate it from the photo)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not scale > 0:
        raise ConfigError(f"{where}: scale must be a positive number or auto, got {value!r}")
    return scale


def scale_settings(cfg: DictConfig, model: InferenceModel) -> ScaleSettings:
    """``scale_auto.*`` of the config over the model's calibration (its sidecar) and defaults."""
    chosen = {k: v for k, v in (cfg.get("scale_auto") or {}).items() if v is not None}
    merged = {**model.scale_auto, **chosen}
    if "candidates" in merged:
        merged["candidates"] = tuple(float(c) for c in merged["candidates"])
    try:
        return ScaleSettings(**merged)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"scale_auto: {error}") from error


def tiling_settings(tiling: Any) -> dict[str, int | None]:
    """``tiling.*`` checked: whole positive numbers (``tile_size`` may be null)."""
    checked: dict[str, int | None] = {}
    for key, minimum in (("tile_size", 1), ("tile_overlap", 0), ("max_pixels", 1)):
        value = tiling.get(key)
        if value is None and key == "tile_size":
            checked[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a whole number ≥ 0" if minimum == 0 else "a positive whole number"
            extra = " or null" if key == "tile_size" else ""
            raise ConfigError(f"tiling.{key} must be {kind}{extra}, got {value!r}")
        checked[key] = value
    return checked


def build_requests(
    paths: list[Path], scale: float | None, scales_csv: str | None
) -> list[PhotoRequest]:
    """One request per photo; ``scale=None`` (``scale=auto``) estimates each photo's scale."""
    per_photo = read_scales(scales_csv) if scales_csv else {}
    if per_photo:
        unknown = [p.stem for p in paths if p.stem not in per_photo]
        if unknown:
            raise ConfigError(f"{scales_csv} has no row for {unknown[:5]} (match the file stem)")
    requests = []
    for path in paths:
        entry = per_photo.get(path.stem, {"scale": scale, "bbox": None})
        requests.append(
            PhotoRequest(name=path.stem, path=path, scale=entry["scale"], bbox=entry["bbox"])
        )
    return requests


def label_map_or_none(data_dir: str | None) -> LabelMap | None:
    """Sign names/MZL numbers from the CSDD meta files when a data folder is available."""
    try:
        return CSDD(resolve_data_dir(data_dir)).labels
    except (CuneidetError, OSError) as error:
        log.warning("no CSDD meta data (%s): writing train labels without MZL numbers/names", error)
        return None


def predict(cfg: DictConfig) -> dict[str, Any]:
    output_dir = Path(cfg.paths.output_dir)
    save_config(cfg, output_dir)
    scale = parse_scale(cfg.scale)
    tiling = tiling_settings(cfg.tiling)
    # the cheap checks of the inputs and outputs first: a typo fails before the model loads
    requests = build_requests(expand_inputs(cfg.inputs), scale, cfg.scales_csv)
    for target in (cfg.output.csv, cfg.output.coco, cfg.output.scales):
        check_writable(target)
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and cfg.runtime == "torch" else "cpu"
    model = load_inference_model(
        cfg.runtime,
        ckpt_path=cfg.get("ckpt_path"),
        model=cfg.get("model_file"),
        threads=cfg.threads,
        device=device,
        inference=_container(cfg.inference),
        recogniser=_container(cfg.get("recogniser")),
    )
    inference = dict(model.inference)
    detections = predict_photos(
        model.detector,
        requests,
        scale_settings=scale_settings(cfg, model),
        **tiling,
        device=device,
        **inference,
    )
    labels = label_map_or_none(cfg.paths.data_dir)
    categories = {
        c: (labels.name(c) if labels else model.class_names.get(c, f"sign_{c}"))
        for c in range(1, model.num_classes)
    }
    write_paper_csv(detections, cfg.output.csv, label_map=labels)
    write_coco_json(detections, cfg.output.coco, None, categories)
    scales = pd.DataFrame(detections.attrs.get("scales", []))
    write_csv(cfg.output.scales, scales)
    summary = {
        "runtime": model.runtime,
        "model": model.source,
        "photos": detections.attrs.get("n_requests", len(requests)),
        "failed": detections.attrs.get("failed", []),
        "detections": len(detections),
        "scale": "auto" if scale is None else scale,
        "scales": detections.attrs.get("scales", []),
        "inference": inference,
        "csv": str(cfg.output.csv),
        "coco": str(cfg.output.coco),
    }
    write_json(output_dir / "predict_summary.json", summary)
    log.info("%d detections on %d photos → %s", len(detections), summary["photos"], cfg.output.csv)
    return summary


def _container(node: Any) -> dict[str, Any] | None:
    if node is None:
        return None
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="predict")
def main(cfg: DictConfig) -> None:
    task_wrapper(predict)(cfg)


if __name__ == "__main__":
    main()
