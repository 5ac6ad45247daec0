"""Per-iteration record of a pipeline: ``metrics.csv``, ``summary.json``, W&B, ``report.html``.

``metrics.csv`` has one row per iteration with every stage's numeric metrics as
``<stage>/<metric>`` columns (test mAP and global AP of the trained detector, precision/recall
of the aligned, placed and all generated boxes against the truth, counts). The HTML report
plots mAP per iteration and the label quality, and draws a few views with their aligned (green)
and placed (orange) boxes.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from PIL import ImageDraw

from cuneidet.data.detection_files import read_paper_csv
from cuneidet.data.segments import load_segment_image
from cuneidet.errors import CuneidetError
from cuneidet.pipeline.context import Context
from cuneidet.pipeline.quality import precision_recall
from cuneidet.pipeline.stages import StageResult
from cuneidet.pipeline.views import row_view_keys, to_scaled
from cuneidet.utils.io import atomic_path, write_csv, write_json, write_text

log = logging.getLogger(__name__)

ALIGNED_COLOUR, PLACED_COLOUR = (40, 170, 60), (240, 140, 20)
MAX_DRAW_SIDE = 1400


def stage_metrics(stages: Mapping[str, StageResult]) -> dict[str, Any]:
    """Flat ``<stage>/<metric>`` of the numeric metrics of an iteration's stages."""
    flat: dict[str, Any] = {}
    for name, result in stages.items():
        for key, value in result.metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                flat[f"{name}/{key}"] = value
    return flat


def _labels_of(stages: Mapping[str, StageResult]) -> pd.DataFrame | None:
    """The iteration's generated labels (``place`` or, at iteration 0, ``hypotheses``)."""
    labels = stages.get("place") or stages.get("hypotheses")
    if labels is None or not (labels.directory / "generated.csv").is_file():
        return None
    return read_paper_csv(labels.directory / "generated.csv")


def label_quality(ctx: Context, stages: Mapping[str, StageResult]) -> dict[str, Any]:
    """Precision/recall of the iteration's aligned, placed and all generated boxes against the
    real and the forge truth, as ``labels/<kind>_<source>_<measure>``."""
    rows = _labels_of(stages)
    if rows is None:
        return {}
    placed = ((rows["det_score"] == 1) & (rows["m_score"] == 1)).to_numpy()
    kinds = {"aligned": rows[~placed], "placed": rows[placed], "all": rows}
    out: dict[str, Any] = {}
    for source, truths in ctx.truths.items():
        if not truths:
            continue
        for kind, subset in kinds.items():
            result = precision_recall(subset, ctx.by_key, truths)
            for measure in ("precision", "recall", "boxes", "correct", "truth_boxes"):
                out[f"labels/{kind}_{source}_{measure}"] = result[measure]
    return out


def record_iteration(ctx: Context, k: int, stages: Mapping[str, StageResult]) -> dict[str, Any]:
    """Write iteration ``k``'s metrics row, summary, W&B entries and the HTML report."""
    root = Path(ctx.cfg.pipeline.root)
    row = {"iteration": k, **stage_metrics(stages), **label_quality(ctx, stages)}
    table_path = root / "metrics.csv"
    rows = pd.read_csv(table_path) if table_path.is_file() else pd.DataFrame()
    if len(rows):
        rows = rows[rows["iteration"] != k]
    table = pd.concat([rows, pd.DataFrame([row])], ignore_index=True).sort_values("iteration")
    write_csv(table_path, table, index=False)
    write_json(
        root / "summary.json",
        {"pipeline": ctx.cfg.pipeline.name, "iterations": table.to_dict(orient="records")},
    )
    if ctx.cfg.pipeline.get("wandb"):
        log_to_wandb(ctx, k, stages)
    write_report(ctx, table, stages)
    if ctx.cfg.pipeline.get("results_json"):
        write_results(ctx, table, Path(ctx.cfg.pipeline.results_json))
    return row


PAPER_MAP = {"weak": 45.3, "semi": 65.6}
"""The paper's test_full mAP (README: fpn_net_vA weak only, fpn_net_vF weak + train_full)."""


def write_results(ctx: Context, table: pd.DataFrame, path: Path) -> Path:
    """A committed record of a pipeline: per-iteration metrics, how each stage ran, hardware."""
    root = Path(ctx.cfg.pipeline.root)
    stages = {}
    for manifest_path in sorted(root.glob("iter_*/*/manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        stages[f"{manifest_path.parent.parent.name}/{manifest_path.parent.name}"] = {
            key: manifest.get(key)
            for key in ("command", "git_commit", "hardware", "started", "duration_s")
        }
    record = {
        "pipeline": ctx.cfg.pipeline.name,
        "setting": ctx.cfg.pipeline.setting,
        "weak": OmegaConf.to_container(ctx.cfg.pipeline.weak, resolve=True),
        "image_source": str(ctx.cfg.data.image_source),
        "weak_views": len(ctx.views),
        "weak_views_with_truth": {source: len(t) for source, t in ctx.truths.items()},
        "semi_supervised": bool(ctx.cfg.pipeline.semi_supervised),
        "iterations": table.to_dict(orient="records"),
        "stages": stages,
        "paper_test_full_mAP": PAPER_MAP,
    }
    return write_json(path, record)


def log_to_wandb(ctx: Context, k: int, stages: Mapping[str, StageResult]) -> None:
    """One W&B run per stage (group = pipeline, job_type = stage), offline without a key."""
    import wandb

    from cuneidet.utils.loggers import resolve_wandb_mode

    mode = resolve_wandb_mode("auto")
    if mode == "disabled":
        return
    for name, result in stages.items():
        if result.skipped:
            continue
        run = wandb.init(
            project="cuneidet",
            group=ctx.cfg.pipeline.name,
            job_type=name,
            name=f"{ctx.cfg.pipeline.name}/iter_{k}/{name}",
            dir=str(Path(ctx.cfg.pipeline.root)),
            mode=mode,
            reinit="finish_previous",
        )
        run.log({"iteration": k, **stage_metrics({name: result})})
        run.finish()


def _plot(table: pd.DataFrame, columns: list[tuple[str, str]], ylabel: str, path: Path) -> bool:
    present = [(c, label) for c, label in columns if c in table.columns]
    if not present:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for column, label in present:
        ax.plot(table["iteration"], table[column], marker="o", label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_xticks(table["iteration"].astype(int).tolist())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def _draw_view(ctx: Context, key: str, rows: pd.DataFrame, path: Path) -> bool:
    view = ctx.by_key.get(key)
    if view is None:
        return False
    try:
        image = load_segment_image(ctx.source, view.segment).convert("RGB")
    except CuneidetError as error:
        log.warning("report: cannot draw %s: %s", key, error)
        return False
    draw = ImageDraw.Draw(image)
    boxes = to_scaled(rows[["x1", "y1", "x2", "y2"]].to_numpy(), view.segment)
    placed = ((rows["det_score"] == 1) & (rows["m_score"] == 1)).to_numpy()
    for box, is_placed in zip(boxes, placed, strict=True):
        colour = PLACED_COLOUR if is_placed else ALIGNED_COLOUR
        draw.rectangle([float(v) for v in box], outline=colour, width=4)
    factor = MAX_DRAW_SIDE / max(image.size)
    if factor < 1:
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return True


def _example_views(ctx: Context, stages: Mapping[str, StageResult], out: Path) -> list[str]:
    rows = _labels_of(stages)
    if rows is None or rows.empty:
        return []
    iteration = (stages.get("place") or stages["hypotheses"]).manifest["iteration"]
    keys = row_view_keys(rows)
    chosen = sorted(set(keys), key=lambda k: -int((keys == k).sum()))
    count = int(ctx.cfg.pipeline.report_views)
    picked = [
        chosen[i] for i in np.linspace(0, len(chosen) - 1, min(count, len(chosen))).astype(int)
    ]
    names = []
    for key in picked:
        name = f"view_{iteration}_{key.replace('/', '_')}.png"
        if _draw_view(ctx, key, rows[keys == key], out / name):
            names.append(name)
    return names


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def write_report(ctx: Context, table: pd.DataFrame, stages: Mapping[str, StageResult]) -> Path:
    """``<root>/report.html``: metrics table, plots and example views of the last iteration."""
    root = Path(ctx.cfg.pipeline.root)
    assets = root / "report_files"
    assets.mkdir(parents=True, exist_ok=True)
    plots = []
    map_columns = [("train/test_mAP", "test mAP"), ("train/test_global_AP", "test global AP")]
    if _plot(table, map_columns, "% (paper protocol, real test_full)", assets / "map.png"):
        plots.append("map.png")
    quality = [
        (f"labels/{kind}_{source}_{measure}", f"{kind} {measure} ({source})")
        for kind in ("aligned", "placed")
        for source in ("real", "forge")
        for measure in ("precision", "recall")
    ]
    if _plot(table, quality, "against the truth", assets / "label_quality.png"):
        plots.append("label_quality.png")
    views = _example_views(ctx, stages, assets)
    truth_counts = ", ".join(f"{len(t)} {source}" for source, t in ctx.truths.items())
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_format(v)}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False, name=None)
    )
    images = "".join(f'<img src="report_files/{name}">' for name in plots)
    examples = "".join(
        f'<figure><img src="report_files/{n}"><figcaption>{n}</figcaption></figure>' for n in views
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>cuneidet pipeline {html.escape(ctx.cfg.pipeline.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px}}img{{max-width:100%;margin:4px}}
figure{{display:inline-block;max-width:48%}}</style></head><body>
<h1>Pipeline {html.escape(ctx.cfg.pipeline.name)}</h1>
<p>{len(ctx.views)} weak views; with truth boxes: {truth_counts}.
Boxes drawn: <span style="color:#28aa3c">aligned</span>,
<span style="color:#f08c14">placed</span>.</p>
<h2>Per iteration</h2><div style="overflow-x:auto"><table><tr>{header}</tr>{body}</table></div>
<h2>Plots</h2>{images}
<h2>Generated labels of the last iteration</h2>{examples}
</body></html>"""
    return write_text(root / "report.html", page)


__all__ = ["record_iteration", "stage_metrics", "write_report", "write_results"]
