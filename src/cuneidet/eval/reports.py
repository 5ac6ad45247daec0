"""Evaluation artefacts: per-class table, ``metrics.json``, PR-curve plot, annotated segments.

Every file is written atomically (complete or absent). Plots use matplotlib's object API with
the Agg canvas, so no global backend is switched and no pyplot state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from cuneidet.eval.paper_metric import DetectionType, classify_detections
from cuneidet.utils.io import atomic_path, write_csv, write_json

__all__ = [
    "draw_segment_detections",
    "per_class_table",
    "plot_pr_curves",
    "write_metrics",
]

PERCENT_KEYS = ("map", "global_ap", "map_align", "precision", "recall")
TABLE_COLUMNS = ["train_label", "name", "ap", "num_gt", "num_det", "tp"]
LEGEND = {
    "missed": "GT missed",
    "tp": "TP",
    "confusion": "FP conf./loc. (dashed)",
    "background": "FP bg./dup.",
}
COLORS = {
    "missed": (30, 110, 255),
    "tp": (0, 190, 0),
    "confusion": (255, 150, 0),
    "background": (230, 0, 0),
}


def per_class_table(
    result: Mapping[str, Any], class_names: Mapping[int, str] | None = None
) -> pd.DataFrame:
    """Per-class rows (``ap`` in percent, nan for classes without GT), sorted by ``num_gt`` desc."""
    rows = [
        {
            "train_label": int(label),
            "name": (class_names or {}).get(int(label), ""),
            "ap": 100.0 * float(stats["ap"]),
            "num_gt": int(stats["num_gt"]),
            "num_det": int(stats["num_det"]),
            "tp": int(stats["tp"]),
        }
        for label, stats in result.get("per_class", {}).items()
    ]
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    frame = frame.sort_values(["num_gt", "train_label"], ascending=[False, True], kind="stable")
    return frame.reset_index(drop=True)


def _clean(value: Any) -> Any:
    """JSON-safe scalar: numpy/torch scalars to Python, nan/inf to None."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_fraction(key: str) -> bool:
    return key in PERCENT_KEYS or key.startswith(("coco_map", "coco_mar"))


def _summary(scalars: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split scalars into a display dict (fractions as percent, 2 decimals) and raw fractions."""
    shown: dict[str, Any] = {}
    fractions: dict[str, Any] = {}
    for key, value in scalars.items():
        value = _clean(value)
        if _is_fraction(key) and (value is None or isinstance(value, int | float)):
            fractions[key] = None if value is None else float(value)
            shown[key] = None if value is None else round(100.0 * float(value), 2)
        else:
            shown[key] = value
    return shown, fractions


def write_metrics(
    out_dir: str | Path,
    result: Mapping[str, Any],
    coco: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    class_names: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``per_class_ap.csv`` and ``pr_curve.png`` into ``out_dir``.

    ``metrics.json`` holds the scalar results with fractions shown in percent (2 decimals),
    the raw fractions under ``"fractions"``, and ``extra`` under ``"extra"``; nan is written as
    null. Returns the dict written to ``metrics.json``.
    """
    out_dir = Path(out_dir)
    scalars = {k: v for k, v in result.items() if not isinstance(v, Mapping)}
    scalars.update(coco or {})
    shown, fractions = _summary(scalars)
    payload = {**shown, "fractions": fractions}
    if extra:
        payload["extra"] = {k: _clean(v) for k, v in extra.items()}
    write_json(out_dir / "metrics.json", payload)
    write_csv(out_dir / "per_class_ap.csv", per_class_table(result, class_names))
    plot_pr_curves(result, out_dir / "pr_curve.png")
    return payload


def _envelope_at(recall: np.ndarray, precision: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Interpolated precision (max precision at recall >= r) on ``grid``; 0 beyond max recall."""
    if recall.size == 0:
        return np.zeros_like(grid)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, grid, side="left")
    padded = np.append(envelope, 0.0)
    return padded[np.minimum(idx, recall.size)]


def _plot_curves(ax: Any, result: Mapping[str, Any], top_k: int) -> None:
    curves = result.get("pr_curves", {})
    per_class = result.get("per_class", {})
    frequent = sorted(curves, key=lambda c: (-per_class[c]["num_gt"], c))[:top_k]
    for cls in frequent:
        curve = curves[cls]
        n_gt = per_class[cls]["num_gt"]
        ax.step(
            curve["recall"],
            curve["precision"],
            where="post",
            lw=0.8,
            alpha=0.45,
            label=f"class {cls} (n={n_gt})",
        )
    if curves:
        grid = np.linspace(0.0, 1.0, 101)
        mean = np.mean(
            [_envelope_at(c["recall"], c["precision"], grid) for c in curves.values()], axis=0
        )
        ax.plot(
            grid,
            mean,
            color="black",
            lw=2.0,
            ls="--",
            label=f"mean over {len(curves)} classes (interp.)",
        )
    glob = result.get("global_pr")
    if glob is not None and len(glob["recall"]):
        ax.step(
            glob["recall"],
            glob["precision"],
            where="post",
            color="tab:red",
            lw=2.2,
            label="global (class-agnostic)",
        )


def plot_pr_curves(result: Mapping[str, Any], out_path: str | Path, top_k: int = 10) -> Path:
    """Global PR curve, mean interpolated per-class curve and the ``top_k`` most frequent ones."""
    fig = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    _plot_curves(ax, result, top_k)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
    title = (
        f"PR curves - mAP {100 * result.get('map', math.nan):.2f}%, "
        f"global AP {100 * result.get('global_ap', math.nan):.2f}%"
    )
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no GT / no detections", ha="center", va="center")
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(out_path)


# --- segment drawing -----------------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib; has Š, Ḫ, subscript digits), else Pillow's default."""
    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (OSError, ValueError):
        return ImageFont.load_default(size=size)


def _dashed_rect(draw: ImageDraw.ImageDraw, box: list[float], color: tuple, width: int) -> None:
    x1, y1, x2, y2 = box
    dash = 4 * width + 4
    for start, stop, fixed, horizontal in (
        (x1, x2, y1, True),
        (x1, x2, y2, True),
        (y1, y2, x1, False),
        (y1, y2, x2, False),
    ):
        pos = start
        while pos < stop:
            end = min(pos + dash, stop)
            seg = [pos, fixed, end, fixed] if horizontal else [fixed, pos, fixed, end]
            draw.line(seg, fill=color, width=width)
            pos += 2 * dash


def _style(det_type: int) -> str:
    """Colour key of a detection type."""
    if det_type == DetectionType.TP:
        return "tp"
    if det_type in (DetectionType.CONFUSION, DetectionType.LOCALIZATION):
        return "confusion"
    return "background"


def _name(label: int, class_names: Mapping[int, str] | None, max_len: int) -> str:
    text = (class_names or {}).get(label) or str(label)
    return text if len(text) <= max_len else text[: max(1, max_len - 1)] + "…"


def _box(
    draw: ImageDraw.ImageDraw, box: list[float], key: str, line_w: int, text: str, font: Any
) -> None:
    color = COLORS[key]
    if key == "confusion":
        _dashed_rect(draw, box, color, line_w)
    else:
        draw.rectangle(box, outline=color, width=line_w)
    if key == "missed":  # bottom-left, so it does not collide with a detection's label
        bottom = box[3] - line_w - draw.textbbox((0, 0), text, font=font)[3]
        draw.text((box[0] + line_w + 1, bottom), text, fill=color, font=font)
    else:
        draw.text((box[0] + line_w + 1, box[1] + line_w), text, fill=color, font=font)


def _legend(width: int, counts: Mapping[str, int], font: Any, size: int) -> Image.Image:
    """White band with a colour swatch and count per category, wrapped to the image width."""
    pad = max(3, size // 3)
    row_h = size + 2 * pad
    placed, x, row = [], pad, 0
    for key, label in LEGEND.items():
        text = f"{label}: {counts[key]}"
        item_w = size + pad + int(font.getlength(text))
        if x > pad and x + item_w > width:
            x, row = pad, row + 1
        placed.append((key, text, x, row * row_h + pad))
        x += item_w + 3 * pad
    band = Image.new("RGB", (width, (row + 1) * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for key, text, x0, y0 in placed:
        draw.rectangle([x0, y0, x0 + size, y0 + size], fill=COLORS[key])
        draw.text((x0 + size + pad, y0), text, fill=(0, 0, 0), font=font)
    return band


def draw_segment_detections(
    image: Image.Image,
    pred: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    classification: Mapping[str, Tensor] | None,
    out_path: str | Path,
    class_names: Mapping[int, str] | None = None,
    max_label_text: int = 12,
    min_score: float = 0.0,
) -> Path:
    """Draw missed GT (blue), TP (green), confusion/localisation FP (orange, dashed) and
    background/duplicate FP (red) with label text on ``image``; save atomically as PNG.

    ``classification`` is the :func:`classify_detections` output (computed when None). Label
    text is the class name (or number) cut to ``max_label_text`` characters; detections scoring
    below ``min_score`` are not drawn. The PNG has the image's width and a legend band (with
    counts) added on top, so its height is ``H + band`` (band > 0, depends on the text size).
    """
    if classification is None:
        classification = classify_detections(pred, target)
    canvas = image.convert("RGB")
    w, h = canvas.size
    line_w = max(1, round(max(w, h) / 600))
    size = max(10, round(max(w, h) / 100))
    font = _font(size)
    draw = ImageDraw.Draw(canvas)
    counts = dict.fromkeys(COLORS, 0)

    gt_boxes = target["boxes"].reshape(-1, 4).tolist()
    gt_labels = target["labels"].reshape(-1).tolist()
    for j in torch.nonzero(classification["gt_missed"].reshape(-1)).flatten().tolist():
        counts["missed"] += 1
        name = _name(int(gt_labels[j]), class_names, max_label_text)
        _box(draw, gt_boxes[j], "missed", line_w, name, font)
    boxes = pred["boxes"].reshape(-1, 4).tolist()
    labels = pred["labels"].reshape(-1).tolist()
    scores = pred["scores"].reshape(-1).tolist()
    types = classification["det_type"].reshape(-1).tolist()
    shown = [i for i, score in enumerate(scores) if score >= min_score]
    # drawing order: missed GT, then FP, then TP on top
    for i in sorted(shown, key=lambda i: types[i] == DetectionType.TP):
        key = _style(types[i])
        counts[key] += 1
        _box(draw, boxes[i], key, line_w, _name(int(labels[i]), class_names, max_label_text), font)

    band = _legend(w, counts, font, size)
    out = Image.new("RGB", (w, h + band.height), (255, 255, 255))
    out.paste(band, (0, 0))
    out.paste(canvas, (0, band.height))
    with atomic_path(out_path) as tmp:
        out.save(tmp, format="PNG")
    return Path(out_path)
