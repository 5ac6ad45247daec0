"""Routes of the draw page: rank a drawn character (oracle bone) or sign (cuneiform)."""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, HTTPException, UploadFile
from PIL import Image

from cuneidet.classify.drawings import drawing_crop, rank_signs
from cuneidet.data.glyphs import EmptyGlyphError
from cuneidet.errors import ConfigError, UploadRejectedError
from cuneidet.oracle.predict import OracleModel, load_oracle_model
from cuneidet.serve.deps import AppState, CurrentUser, State
from cuneidet.serve.settings import ServeSettings
from cuneidet.serve.uploads import read_small_image

router = APIRouter(prefix="/api/draw")

MAX_DRAWING_BYTES = 2 * 1024 * 1024
MAX_DRAWING_PIXELS = 4_000_000
TOP = 10
DESCRIPTIONS = {
    "oracle": "Oracle-bone character → the most likely modern Chinese characters "
    "(JiaGuWen classifier, probabilities calibrated on held-out images)",
    "cuneiform": "Cuneiform sign → the most likely MZL signs (the recogniser's sign "
    "classifier, which learned from photographs: drawn strokes are far from impressed wedges)",
}


def load_oracle(settings: ServeSettings) -> OracleModel:
    if settings.oracle_ckpt is None:
        raise ConfigError(
            "no oracle-bone model configured (serve.oracle_ckpt); train one with cuneidet-train "
            "experiment=oracle_bone"
        )
    return load_oracle_model(settings.oracle_ckpt)


def _cuneiform_classifier(state: AppState) -> Any:
    """The loaded recogniser's sign classifier, or a 503 saying why there is none."""
    loaded = state.models.loaded
    if loaded is None:
        raise HTTPException(503, state.models.error or "the detector is still loading; try again")
    detector = loaded.model.detector
    if loaded.kind != "two_stage" or not hasattr(detector, "classifier"):
        raise HTTPException(
            503,
            "cuneiform drawings need a two-stage recogniser (its sign classifier); the "
            f"loaded model {loaded.path.name} has none",
        )
    return detector


def _mode_status(state: AppState, mode: str) -> dict[str, Any]:
    """Whether ``mode`` can rank now; ``loading`` while its model is still being loaded."""
    holder = state.oracle if mode == "oracle" else state.models
    loading = holder.loaded is None and holder.error is None
    ready, error, classes = False, holder.error, 0
    if mode == "oracle" and state.oracle.loaded is not None:
        ready, classes = True, len(state.oracle.loaded.charset)
    elif mode == "cuneiform" and not loading:
        try:
            classes = int(_cuneiform_classifier(state).classifier.num_classes) - 1
            ready = True
        except HTTPException as refusal:
            error = str(refusal.detail)
    return {
        "mode": mode,
        "ready": ready,
        "loading": loading,
        "error": error,
        "classes": classes,
        "description": DESCRIPTIONS[mode],
    }


@router.get("/modes")
def draw_modes(_: CurrentUser, state: State) -> list[dict[str, Any]]:
    return [_mode_status(state, mode) for mode in DESCRIPTIONS]


@router.post("/{mode}")
def rank_drawing(
    mode: str, _: CurrentUser, state: State, image: Annotated[UploadFile, File()]
) -> dict[str, Any]:
    if mode not in DESCRIPTIONS:
        raise HTTPException(404, f"no draw mode {mode!r}; choose from {sorted(DESCRIPTIONS)}")
    try:
        pixels = read_small_image(image.file, image.filename, MAX_DRAWING_BYTES, MAX_DRAWING_PIXELS)
    except UploadRejectedError as error:
        raise HTTPException(error.status_code, str(error)) from error
    try:
        if mode == "oracle":
            top, seen = _rank_oracle(state, pixels)
        else:
            top, seen = _rank_cuneiform(state, pixels)
    except EmptyGlyphError as error:
        raise HTTPException(400, str(error)) from error
    return {"mode": mode, "top": top, "input": _data_url(seen)}


def _rank_oracle(state: AppState, pixels: np.ndarray) -> tuple[list[dict], np.ndarray]:
    try:
        model = state.oracle.get()
    except ConfigError as error:
        raise HTTPException(503, str(error)) from error
    ranking, seen = model.rank(pixels, TOP)
    return [{**row, "glyph": "", "mzl": None} for row in ranking], seen


def _rank_cuneiform(state: AppState, pixels: np.ndarray) -> tuple[list[dict], np.ndarray]:
    detector = _cuneiform_classifier(state)
    crop = drawing_crop(pixels, int(detector.crop_size), float(detector.context))
    classes = state.classes()
    ranking = [
        {"rank": rank + 1, **classes.get(label).as_dict(), "probability": probability}
        for rank, (label, probability) in enumerate(rank_signs(detector.classifier, crop, TOP))
    ]
    return ranking, crop


def _data_url(image: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
