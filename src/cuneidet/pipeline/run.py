"""The iterative weak-supervision loop, stage by stage (see ``configs/pipeline.yaml``).

Stages (``outputs/pipelines/<name>/iter_<k>/<stage>/``):

* ``iter_0/lines``: text lines of every weak view, assigned to transliteration lines
  (Gale–Church); shared by all iterations (the line map is also the detector's ignore region);
* ``iter_0/hypotheses``: null-hypothesis boxes → ``generated.csv``;
* ``iter_0/train`` with ``pipeline.start_from``: a trained detector or recogniser copied in as
  detector 0 (no hypotheses, no training): the loop starts at its detections;
* ``iter_k/detect`` (k > 0): raw detections of the detector trained in iteration k − 1;
* ``iter_k/align`` and ``iter_k/place`` (k > 0): aligned and aligned ∪ placed boxes →
  ``generated.csv``;
* ``iter_k/train``: the next detector on the generated labels (plus real boxes when
  semi-supervised), tested on real test_full.

Every stage's metrics also land in ``<root>/metrics.csv`` (and W&B when enabled) and
``<root>/report.html`` is rewritten after each iteration.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from cuneidet.align.sign_alignment import AlignmentParams
from cuneidet.data.detection_files import write_paper_csv
from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.pipeline.align_stage import (
    AlignSettings,
    align_views,
    aligned_and_placed,
    place_views,
)
from cuneidet.pipeline.context import Context, make_context
from cuneidet.pipeline.initial import initial_hypotheses
from cuneidet.pipeline.stages import StageResult, StageRunner

log = logging.getLogger("cuneidet.pipeline")

INIT_MODES = ("previous", "scratch")

GENERATED = "generated.csv"
ALIGNED = "aligned.csv"


def _views_config(ctx: Context) -> dict[str, Any]:
    data = ctx.cfg.data
    return {
        "views": [view.key for view in ctx.views],
        "image_source": str(data.image_source),
        "image_source_options": OmegaConf.to_container(data.image_source_options, resolve=True),
        "registration_fixes": bool(data.registration_fixes),
    }


# -- stages -----------------------------------------------------------------------------------
def lines_stage(ctx: Context) -> StageResult:
    from cuneidet.lines.module import load_line_module
    from cuneidet.pipeline.lines_stage import run_line_stage

    p = ctx.cfg.pipeline
    settings = OmegaConf.to_container(p.line_postprocess, resolve=True) or {}
    overrides = {key: value for key, value in settings.items() if value is not None}
    config = {"line_ckpt": str(p.line_ckpt), "postprocess": overrides, **_views_config(ctx)}

    def work(out: Path) -> dict[str, Any]:
        module = load_line_module(str(p.line_ckpt))
        post = dataclasses.replace(module.post, **overrides)
        return run_line_stage(ctx.views, ctx.source, module, post, out, progress=_progress(ctx))

    if p.get("lines_from"):
        shared = StageRunner(p.lines_from).lookup(0, "lines", config, {})
        if shared is None:
            raise ConfigError(
                f"pipeline.lines_from={p.lines_from} has no finished line stage for these views "
                "and line settings; drop lines_from or point it at a matching pipeline"
            )
        log.info("line stage of %s reused", p.lines_from)
        return shared
    return ctx.runner.run(0, "lines", config, {}, work, resumable=True)


def hypotheses_stage(ctx: Context, lines: StageResult) -> StageResult:
    def work(out: Path) -> dict[str, Any]:
        rows, counts = initial_hypotheses(ctx.views, lines.directory)
        if rows.empty:
            raise ConfigError("iteration 0: no view has an assigned text line; check the lines")
        write_paper_csv(rows, out / GENERATED, header=False)
        return {**counts, "boxes": len(rows)}

    return ctx.runner.run(0, "hypotheses", {}, {"lines": lines}, work)


def detect_stage(ctx: Context, k: int, detector: StageResult) -> StageResult:
    from cuneidet.models.checkpoint import rebuild_module
    from cuneidet.pipeline.detect import run_detect_stage
    from cuneidet.utils.instantiate import instantiate

    settings = OmegaConf.to_container(ctx.cfg.pipeline.detect, resolve=True)
    workers = int(settings.pop("num_workers", 0))
    runtime = str(settings.pop("runtime", "torch"))
    threads = int(settings.pop("threads", 2))
    config = {"detect": settings, **_views_config(ctx)}

    def work(out: Path) -> dict[str, Any]:
        module = rebuild_module(detector.directory / detector.metrics["checkpoint"])
        network = module.detector
        if runtime == "onnx":  # the detector exported beside its detections, run by ORT
            from cuneidet.deploy.export import export_onnx
            from cuneidet.deploy.runtime import load_onnx_detector

            model = out / "detector.onnx"
            if not model.with_suffix(".json").is_file():
                export_onnx(network, model, inference=dict(module.inference))
            network, _ = load_onnx_detector(model, threads=threads)
        elif runtime != "torch":
            raise ConfigError(f"pipeline.detect.runtime={runtime}: choose torch or onnx")

        def make_trainer(callbacks: list[Any]) -> Any:
            return instantiate(
                ctx.cfg.trainer, logger=False, callbacks=callbacks, default_root_dir=str(out)
            )

        return run_detect_stage(
            ctx.views, ctx.source, network, make_trainer, out, settings, workers
        )

    return ctx.runner.run(k, "detect", config, {"detector": detector}, work, resumable=True)


def align_settings(cfg: DictConfig) -> AlignSettings:
    a = cfg.alignment
    sign = AlignmentParams(**OmegaConf.to_container(a.sign, resolve=True))
    placement = OmegaConf.to_container(a.placement, resolve=True)
    return AlignSettings(sign, a.line_window, a.max_per_class, float(a.refine_clip), placement)


def align_stage(ctx: Context, k: int, lines: StageResult, detect: StageResult) -> StageResult:
    settings = align_settings(ctx.cfg)
    config = {"alignment": OmegaConf.to_container(ctx.cfg.alignment, resolve=True)}

    def work(out: Path) -> dict[str, Any]:
        rows, counts = align_views(
            ctx.views,
            lines.directory,
            detect.directory,
            settings,
            workers=int(ctx.cfg.pipeline.workers),
            progress=_progress(ctx),
        )
        write_paper_csv(rows, out / ALIGNED, header=False)
        return {**counts, "aligned_boxes": len(rows)}

    inputs = {"lines": lines, "detect": detect}
    return ctx.runner.run(k, "align", config, inputs, work)


def place_stage(ctx: Context, k: int, lines: StageResult, align: StageResult) -> StageResult:
    from cuneidet.data.detection_files import read_paper_csv

    settings = align_settings(ctx.cfg)
    config = {"alignment": OmegaConf.to_container(ctx.cfg.alignment, resolve=True)}

    def work(out: Path) -> dict[str, Any]:
        aligned = read_paper_csv(align.directory / ALIGNED)
        aligned = aligned[aligned["train_label"] < 240].reset_index(drop=True)
        placed, counts = place_views(
            ctx.views,
            lines.directory,
            aligned,
            settings,
            workers=int(ctx.cfg.pipeline.workers),
            progress=_progress(ctx),
        )
        rows = aligned_and_placed(aligned, placed)
        write_paper_csv(rows, out / GENERATED, header=False)
        return {**counts, "aligned_boxes": len(aligned), "placed_boxes": len(placed)}

    return ctx.runner.run(k, "place", config, {"lines": lines, "align": align}, work)


def start_stage(ctx: Context) -> StageResult:
    """Iteration 0's detector given by ``pipeline.start_from`` (a ``cuneidet-train`` checkpoint
    of either kind): copied into ``iter_0/train`` with the figures of the run that trained it."""
    from cuneidet.models.checkpoint import rebuild_module

    source = Path(str(ctx.cfg.pipeline.start_from))
    if not source.is_file():
        raise DataNotFoundError(
            f"pipeline.start_from={source} does not exist; pass the best.ckpt of a cuneidet-train "
            "run (a detector or a two-stage recogniser), or null to train detector 0"
        )
    stat = source.stat()
    config = {"start_from": str(source.resolve()), "size": stat.st_size, "mtime": stat.st_mtime}

    def work(out: Path) -> dict[str, Any]:
        module = rebuild_module(source)
        if not hasattr(module, "detector"):  # refused here rather than at the detect stage
            raise ConfigError(
                f"pipeline.start_from={source} holds a {type(module).__name__}, not a sign "
                "detector; pass the checkpoint of a cuneidet-train detector or recogniser run"
            )
        target = out / "checkpoints" / "start.ckpt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        summary = _read_json(source.parent.parent / "summary.json")
        return {
            "checkpoint": str(target.relative_to(out)),
            "start_from": str(source),
            "test_mAP": summary.get("test_map"),
            "test_global_AP": summary.get("test_global_ap"),
            "val_best_mAP": summary.get("val_best"),
            "epochs": summary.get("epochs"),
            "train_time_s": summary.get("train_time_s"),
        }

    return ctx.runner.run(0, "train", config, {}, work)


def train_config(
    ctx: Context, out: Path, labels: StageResult, lines: StageResult, init: str | None
) -> DictConfig:
    """cuneidet-train's configuration for one training stage, output into ``out``."""
    cfg = OmegaConf.create(OmegaConf.to_container(ctx.cfg, resolve=False))
    with open_dict(cfg):
        cfg.pop("hydra", None)  # present when composed outside an app (tests, notebooks)
        cfg.paths.output_dir = str(out)
        cfg.data.generated = [str(labels.directory / GENERATED)]
        cfg.data.generated_line_dir = str(lines.directory)
        cfg.data.train_on_boxes = bool(ctx.cfg.pipeline.semi_supervised)
        cfg.init_from = init
        if init is not None and init != ctx.cfg.get("init_from"):
            # a previous detector brings every weight: no partial initialisation on top of it
            cfg.init_backbone_from = None
            cfg.init_classifier_from = None
        cfg.task_name = f"{ctx.cfg.pipeline.name}/train"
        last = out / "checkpoints" / "last.ckpt"
        cfg.ckpt_path = str(last) if last.is_file() else None
        for logger in (cfg.get("logger") or {}).values():
            if isinstance(logger, DictConfig) and "wandb" in str(logger.get("_target_", "")):
                logger.group = ctx.cfg.pipeline.name
                logger.job_type = "train"
                logger.name = f"{ctx.cfg.pipeline.name}/{out.parent.name}/train"
    return cfg


def _training_fingerprint(ctx: Context) -> dict[str, Any]:
    """What decides a training stage's result (run folders and logging left out)."""
    cfg = ctx.cfg
    keep = {}
    for key in ("model", "trainer", "data", "callbacks"):
        keep[key] = OmegaConf.to_container(cfg[key], resolve=False)
    # how a run is made resumable, not what it computes: stages trained before these existed
    # stay valid
    keep["trainer"].pop("plugins", None)
    keep["callbacks"].pop("random_state", None)
    keep["callbacks"].get("model_checkpoint", {}).pop("enable_version_counter", None)
    return {
        **keep,
        "seed": cfg.seed,
        "semi_supervised": bool(cfg.pipeline.semi_supervised),
        "init": str(cfg.pipeline.init),
    }


def initial_weights(
    mode: str, init_from: str | None, previous: StageResult | None
) -> tuple[str | None, StageResult | str | None]:
    """The checkpoint a training stage starts from, and the input it counts as.

    ``mode="previous"``: the previous iteration's detector; the first detector (and every one
    with ``"scratch"``) starts from ``init_from`` (e.g. forge pretraining) or from scratch.
    """
    if mode not in INIT_MODES:
        raise ConfigError(f"pipeline.init must be {' or '.join(INIT_MODES)}, got {mode}")
    if previous is not None and mode == "previous":
        return str(previous.directory / previous.metrics["checkpoint"]), previous
    return (str(init_from), str(init_from)) if init_from else (None, None)


def train_stage(
    ctx: Context,
    k: int,
    labels: StageResult,
    lines: StageResult,
    previous: StageResult | None,
) -> StageResult:
    from cuneidet.training import train

    init, source = initial_weights(ctx.cfg.pipeline.init, ctx.cfg.get("init_from"), previous)
    inputs: dict[str, StageResult | str] = {"labels": labels, "lines": lines}
    if source is not None:
        inputs["init"] = source

    def work(out: Path) -> dict[str, Any]:
        cfg = train_config(ctx, out, labels, lines, init)
        metrics = train(cfg)
        summary = _read_json(out / "summary.json")
        best = summary.get("best_checkpoint") or str(out / "checkpoints" / "last.ckpt")
        return {
            "checkpoint": str(Path(best).relative_to(out)),
            "test_mAP": metrics.get("test/mAP"),
            "test_global_AP": metrics.get("test/global_AP"),
            "val_best_mAP": summary.get("val_best"),
            "epochs": summary.get("epochs"),
            "train_time_s": summary.get("train_time_s"),
        }

    return ctx.runner.run(k, "train", _training_fingerprint(ctx), inputs, work, resumable=True)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _progress(ctx: Context) -> bool:
    return bool(ctx.cfg.data.get("progress", True))


# -- the loop ---------------------------------------------------------------------------------
def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Run iterations 0 … ``pipeline.iteration`` (finished stages skipped); returns the last
    iteration's metrics."""
    from cuneidet.pipeline.report import record_iteration

    if int(cfg.pipeline.iteration) < 0:
        raise ConfigError(f"pipeline.iteration must be ≥ 0, got {cfg.pipeline.iteration}")
    if str(cfg.pipeline.init) not in INIT_MODES:
        raise ConfigError(
            f"pipeline.init must be {' or '.join(INIT_MODES)}, got {cfg.pipeline.init}"
        )
    ctx = make_context(cfg)
    lines = lines_stage(ctx)
    previous: StageResult | None = None
    summary: dict[str, Any] = {}
    for k in range(int(cfg.pipeline.iteration) + 1):
        stages: dict[str, StageResult] = {"lines": lines} if k == 0 else {}
        if k == 0 and cfg.pipeline.get("start_from"):
            stages["train"] = previous = start_stage(ctx)
            summary = record_iteration(ctx, k, stages)
            continue
        if k == 0:
            labels = stages["hypotheses"] = hypotheses_stage(ctx, lines)
        else:
            assert previous is not None
            detect = stages["detect"] = detect_stage(ctx, k, previous)
            align = stages["align"] = align_stage(ctx, k, lines, detect)
            labels = stages["place"] = place_stage(ctx, k, lines, align)
        stages["train"] = previous = train_stage(ctx, k, labels, lines, previous)
        summary = record_iteration(ctx, k, stages)
    return summary


__all__ = ["run_pipeline"]
