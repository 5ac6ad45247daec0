"""``cuneidet-lines``: predict text lines for any views, or evaluate a line network."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from cuneidet.align import view_transliteration
from cuneidet.cli.common import task_wrapper
from cuneidet.config import config_dir
from cuneidet.data.csdd import CSDD
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.segments import PhotoCache, load_segment_image, view_stem
from cuneidet.data.sources import build_photo_source
from cuneidet.data.views import segment_from_row
from cuneidet.errors import ConfigError, CuneidetError
from cuneidet.lines.artifacts import draw_overlay, write_overlay, write_view_artifacts
from cuneidet.lines.data import LineDataModule, normalize
from cuneidet.lines.evaluate import evaluate_samples, forge_samples, truth_lines_summary
from cuneidet.lines.metrics import summary_of_rows
from cuneidet.lines.module import LineModule, load_line_module
from cuneidet.lines.predict import LinePostprocess, hypotheses_from_probability, line_probability
from cuneidet.lines.truth import LineView, box_line_views, line_views
from cuneidet.utils.io import atomic_open, write_json
from cuneidet.utils.provenance import command_line, git_commit, hardware_description, save_config

log = logging.getLogger("cuneidet.lines")
ACTIONS = ("predict", "evaluate")
BOX_SPLIT = "boxes"  # evaluate.real_splits entry: views known by their sign boxes only


POSTPROCESS_KEYS = (
    "threshold",
    "method",
    "assignment",
    "line_length",
    "variance",
    "max_extra_lines",
    "text_length",
    "rescale",
)


def postprocess(cfg: DictConfig, module: LineModule) -> LinePostprocess:
    """The checkpoint's post-processing, with the command line's non-null overrides."""
    overrides = {key: cfg[key] for key in POSTPROCESS_KEYS if cfg.get(key) is not None}
    return dataclasses.replace(module.post, **overrides)


def choose_views(csdd: CSDD, views: DictConfig) -> pd.DataFrame:
    """Segments rows of the chosen views (assigned ones only), sorted."""
    frames = []
    if views.collections:
        frames.append(csdd.segments(list(views.collections), assigned_only=True))
    for split in views.splits:
        keys = [(v.segment.collection, v.segment.segm_idx) for v in line_views(csdd, split)]
        table = csdd.segments(sorted({c for c, _ in keys}), assigned_only=True)
        wanted = pd.MultiIndex.from_tuples(keys)
        frames.append(table[table.set_index(["collection", "segm_idx"]).index.isin(wanted)])
    if not frames:
        raise ConfigError("choose views: views.collections=[saa01,...] or views.splits=[test]")
    table = pd.concat(frames).drop_duplicates(["collection", "segm_idx"])
    if views.tablets:
        table = table[table["tablet_CDLI"].isin(list(views.tablets))]
    table = table.sort_values(["collection", "segm_idx"]).reset_index(drop=True)
    if views.limit:
        table = table.head(int(views.limit))
    if table.empty:
        raise ConfigError(f"no assigned view matches views={OmegaConf.to_container(views)}")
    return table


def predict_views(cfg: DictConfig, module: LineModule, output_dir: Path) -> dict[str, Any]:
    csdd = CSDD(resolve_data_dir(cfg.data_dir), registration_fixes=cfg.registration_fixes)
    source = PhotoCache(
        build_photo_source(
            cfg.image_source, csdd.data_dir, folder=cfg.image_folder, **cfg.image_source_options
        )
    )
    post = postprocess(cfg, module)
    table = choose_views(csdd, cfg.views)
    rows, failures = [], {}
    for _, row in tqdm(
        table.iterrows(), total=len(table), desc="lines", unit="view", disable=not cfg.progress
    ):
        segment = segment_from_row(row)
        try:
            image = np.asarray(load_segment_image(source, segment), np.uint8)
        except CuneidetError as error:
            failures[segment.key] = str(error)
            continue
        text = view_transliteration(csdd, segment.collection, segment.segm_idx, segment.tablet)
        probability = line_probability(module.net, normalize(image))
        hypotheses, assigned = hypotheses_from_probability(
            probability, module.grid, image.shape, text, post
        )
        stem = view_stem(segment.key, segment.name)
        meta = {"key": segment.key, "tablet": segment.tablet, "view": segment.view}
        meta |= {"scale": segment.scale, "bbox": list(segment.bbox), "tl_count": text.num_lines}
        paths = write_view_artifacts(
            output_dir / "lines", stem, meta, hypotheses, assigned, probability
        )
        if cfg.overlays:
            picture = draw_overlay(image, hypotheses, assigned, probability)
            write_overlay(output_dir / "overlays" / f"{stem}.png", picture)
        rows.append(
            {
                "key": segment.key,
                "tablet": segment.tablet,
                "view": segment.view,
                "lines": len(hypotheses),
                "tl_lines": text.num_lines,
                "assigned": int(np.count_nonzero(assigned >= 0)),
                "pitch": hypotheses.pitch,
                "json": str(paths["json"].relative_to(output_dir)),
            }
        )
    if failures:
        log.warning("skipped %d of %d views whose photo failed:", len(failures), len(table))
        for key, message in list(failures.items())[:10]:
            log.warning("  %s: %s", key, message)
    if not rows:
        raise CuneidetError(f"no view could be processed ({len(failures)} failed)")
    with atomic_open(output_dir / "views.csv", "w", newline="") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)
    blank = [row["key"] for row in rows if row["tl_lines"] and not row["lines"]]
    if blank:
        log.warning(
            "%d of %d views have a transliteration but no line was found on them; look at "
            "their `scale` (signs far from 128 px high) and their damage: %s",
            len(blank),
            len(rows),
            ", ".join(blank[:10]) + (" …" if len(blank) > 10 else ""),
        )
    return {
        "views": len(rows),
        "failed": sorted(failures),
        "transliterated_views_without_lines": blank,
        "output_dir": str(output_dir),
    }


def evaluate_sets(cfg: DictConfig, module: LineModule, output_dir: Path) -> dict[str, Any]:
    """Line F1 and assignment accuracy on real annotated views and on forged views."""
    settings = cfg.evaluate
    post = postprocess(cfg, module)
    results: dict[str, Any] = {}
    data = LineDataModule(
        data_dir=cfg.data_dir,
        image_source=cfg.image_source,
        image_folder=cfg.image_folder,
        image_source_options=cfg.image_source_options,
        registration_fixes=cfg.registration_fixes,
        progress=cfg.progress,
        **settings.validation,
    )
    for split in settings.real_splits:
        samples = data.load(real_views(data, split, settings.box_sets))
        results[f"real_{split}"] = _evaluate(
            module, samples, post, settings, output_dir / f"real_{split}"
        )
        results[f"real_{split}"]["truth"] = (
            "rows of annotated signs" if split == BOX_SPLIT else "annotated lines"
        )
    if settings.forge_collections and settings.forge_views:
        from cuneidet.forge.store import Forge

        forge = Forge(data.csdd.data_dir, **settings.forge_options)
        tablets = _spread(
            forge.planner.tablets_of(collections=list(settings.forge_collections)),
            int(settings.forge_views),
        )
        samples = forge_samples(forge, tablets, progress=cfg.progress)
        results["forge"] = _evaluate(module, samples, post, settings, output_dir / "forge")
        results["forge"]["forge_variant"] = forge.variant
        results["forge"]["tablets"] = len(tablets)
    return results


def real_views(
    data: LineDataModule, split: str, box_sets: Sequence[str] = ("train_full",)
) -> list[LineView]:
    """The real views of an evaluation split: a line-annotated split (``train``, ``test``), the
    validation views of line training (``val``), or ``boxes``: the views of ``box_sets``
    without annotated lines, minus the tablets of line training, with the rows of their
    annotated signs as lines."""
    if split == "val":
        return data.split_views()[1]
    if split == BOX_SPLIT:
        trained = sorted({v.segment.tablet for v in data.split_views()[0]})
        return box_line_views(data.csdd, list(box_sets), trained)
    return line_views(data.csdd, split)


def _spread(items: Sequence[str], count: int) -> list[str]:
    """``count`` items evenly spread over a sorted list (deterministic)."""
    if count >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in sorted(set(picks))]


def _evaluate(
    module: LineModule, samples: list, post: LinePostprocess, settings: DictConfig, out: Path
) -> dict[str, Any]:
    scores, results = evaluate_samples(
        module.net, samples, post, tolerance=float(settings.tolerance), total=len(samples)
    )
    with atomic_open(out / "per_view.csv", "w", newline="") as handle:
        pd.DataFrame([r.row for r in results]).to_csv(handle, index=False)
    for result in results[: int(settings.overlays)]:
        picture = draw_overlay(
            result.sample.image,
            result.hypotheses,
            result.assigned,
            result.probability,
            truth=result.sample.polylines,
        )
        write_overlay(out / f"{view_stem(result.sample.key, result.sample.name)}.png", picture)
    summary = scores.summary()
    set_aside = set(settings.get("set_aside_tablets") or [])
    aside = [r.row for r in results if r.sample.tablet in set_aside]
    if aside:
        kept = [r.row for r in results if r.sample.tablet not in set_aside]
        summary["without_set_aside"] = {
            "set_aside": [row["view"] for row in aside],
            **summary_of_rows(kept),
        }
    summary["truth_lines_assignment"] = truth_lines_summary([r.row for r in results])
    summary["views"] = len(samples)
    summary["views_with_transliteration"] = sum(
        1 for s in samples if s.transliteration is not None and s.transliteration.num_lines
    )
    log.info(
        "%s: line F1 %.3f (P %.3f, R %.3f), assignment accuracy %.3f over %d lines "
        "(on the truth lines: %.3f, by order %.3f, over %d lines)",
        out.name,
        summary["f1"],
        summary["precision"],
        summary["recall"],
        summary["assignment_accuracy"],
        summary["assignment_total"],
        summary["truth_lines_assignment"]["accuracy"],
        summary["truth_lines_assignment"]["order_accuracy"],
        summary["truth_lines_assignment"]["total"],
    )
    return summary


def lines_app(cfg: DictConfig) -> dict[str, Any]:
    if cfg.action not in ACTIONS:
        raise ConfigError(f"Unknown action {cfg.action!r}; valid: {', '.join(ACTIONS)}")
    output_dir = Path(cfg.paths.output_dir)
    save_config(cfg, output_dir)
    module = load_line_module(cfg.ckpt_path)
    if cfg.action == "predict":
        summary = predict_views(cfg, module, output_dir)
        write_json(output_dir / "summary.json", summary)
        return summary
    figures = evaluate_sets(cfg, module, output_dir)
    record = {
        "command": command_line(),
        "git_commit": git_commit(),
        "hardware": hardware_description(),
        "checkpoint": str(cfg.ckpt_path),
        "network": type(module.net).__name__,
        "postprocess": dataclasses.asdict(postprocess(cfg, module)),
        "tolerance": float(cfg.evaluate.tolerance),
        **figures,
    }
    write_json(output_dir / "metrics.json", record)
    if cfg.results_json:
        write_results(Path(cfg.results_json), record, cfg.get("results_key"))
    return record


def write_results(path: Path, record: dict[str, Any], key: str | None) -> None:
    """Write ``record`` to ``path``, or under ``key`` of the JSON object already there."""
    if not key:
        write_json(path, record)
        return
    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not isinstance(existing, dict):
        raise ConfigError(f"{path} does not hold a JSON object; cannot add results_key={key}")
    existing[str(key)] = record
    write_json(path, existing)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="lines")
def main(cfg: DictConfig) -> None:
    task_wrapper(lines_app)(cfg)


if __name__ == "__main__":
    main()
