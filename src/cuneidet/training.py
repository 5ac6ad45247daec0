"""Fit on tiles, select on validation mAP, test the best checkpoint: the body of ``cuneidet-train``
(:mod:`cuneidet.cli.train`), also run by the pipeline's training stage and ``cuneidet-classify``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.lines.module import LineModule
from cuneidet.models.checkpoint import init_backbone, init_classifier, load_weights
from cuneidet.models.module import count_parameters
from cuneidet.utils.instantiate import instantiate, instantiate_list
from cuneidet.utils.io import write_json
from cuneidet.utils.loggers import log_report_to_wandb
from cuneidet.utils.provenance import command_line, git_commit, hardware_description, save_config

log = logging.getLogger("cuneidet.train")


def resolve_resume_checkpoint(cfg: DictConfig) -> str | None:
    """``ckpt_path=last``: this run's last.ckpt; none when this run folder has checkpoints but no
    last.ckpt yet (stopped in its first epoch); else, for a new folder, the newest last.ckpt of
    the same task."""
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, "", "null"):
        return None
    if ckpt != "last":
        if not Path(ckpt).is_file():
            raise DataNotFoundError(f"ckpt_path={ckpt} does not exist")
        return str(ckpt)
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if own.is_file():
        return str(own)
    if own.parent.is_dir():
        # a run started here before and was stopped before its first epoch ended: there is
        # nothing of it to resume, and another run of the task is not this one
        log.warning("ckpt_path=last: no last.ckpt in %s yet; training from the start", own.parent)
        return None
    runs = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
    found = sorted(runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataNotFoundError(
            f"ckpt_path=last but no last.ckpt under {own.parent} or {runs}/*/checkpoints; "
            "start without ckpt_path or give a checkpoint path"
        )
    log.info("resuming from %s", found[-1])
    return str(found[-1])


def check_model_and_data(cfg: DictConfig, module: Any) -> None:
    """A line network trains on text lines, a sign detector on sign boxes."""
    line_data = str(cfg.data.get("_target_", "")).endswith("LineDataModule")
    if isinstance(module, LineModule) != line_data:
        raise ConfigError(
            f"model {type(module).__name__} cannot train on data {cfg.data.get('_target_')}: "
            "a line network needs data=csdd_lines (model=line_net selects it), a sign detector "
            "a box dataset such as data=csdd"
        )


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and test) as configured; returns the final metrics."""
    wall_start = time.monotonic()
    output_dir = Path(cfg.paths.output_dir)
    save_config(cfg, output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    module = instantiate(cfg.model)
    if cfg.get("init_from"):
        load_weights(module, cfg.init_from)
        log.info("initialised the network from %s", cfg.init_from)
    if cfg.get("init_backbone_from"):
        copied = init_backbone(module, cfg.init_backbone_from)
        log.info("backbone: %d tensors from the classifier %s", copied, cfg.init_backbone_from)
    if cfg.get("init_classifier_from"):
        init_classifier(module, cfg.init_classifier_from)
        log.info("naming stage initialised from the classifier %s", cfg.init_classifier_from)
    check_model_and_data(cfg, module)
    datamodule = instantiate(cfg.data, **module.datamodule_arguments())
    module.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    if hasattr(module, "sign_height"):
        module.sign_height = float(cfg.data.get("sign_height") or 128.0)
    callbacks = instantiate_list(cfg.get("callbacks"))
    loggers = instantiate_list(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    num_params = count_parameters(module)
    for logger in loggers:
        logger.log_hyperparams(
            {
                "config": OmegaConf.to_container(cfg, resolve=True),
                "model/params_total": num_params,
            }
        )
    log.info("%s parameters: %.2f M", type(module).__name__, num_params / 1e6)

    started = time.monotonic()
    if cfg.get("train"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_resume_checkpoint(cfg))
    train_time = time.monotonic() - started
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    summary: dict[str, Any] = {
        "model": type(module).__name__,
        "command": command_line(),
        "git_commit": git_commit(),
        **module.data_summary(cfg.data),
        "image_source": cfg.data.get("image_source"),
        "init_from": cfg.get("init_from"),
        "init_backbone_from": cfg.get("init_backbone_from"),
        "init_classifier_from": cfg.get("init_classifier_from"),
        "epochs": _epochs_trained(trainer),
        "global_steps": int(trainer.global_step),
        "train_time_s": round(train_time, 1),
        "hardware": hardware_description(),
        "parameters": num_params,
        "optimized_metric": cfg.get("optimized_metric"),
        "val_best": _best_score(trainer),
    }
    if cfg.get("test"):
        best = _best_checkpoint(trainer)
        if best:
            log.info("testing best checkpoint %s", best)
        if not trainer.is_global_zero:
            return metrics
        tester = trainer if trainer.world_size == 1 else _single_device_tester(cfg, loggers)
        tester.test(module, datamodule=datamodule, ckpt_path=best)
        summary.update(
            module.write_test_report(datamodule, output_dir / "test", **cfg.report),
            best_checkpoint=best,
        )
        log_report_to_wandb(loggers, output_dir / "test")
        metrics.update({k: float(v) for k, v in tester.callback_metrics.items()})
    summary["wall_time_s"] = round(time.monotonic() - wall_start, 1)
    write_json(output_dir / "summary.json", summary)
    log.info("summary: %s", {k: summary[k] for k in summary if "map" in k or "ap" in k})
    return metrics


def _single_device_tester(cfg: DictConfig, loggers: list[Any]) -> pl.Trainer:
    """A one-device trainer for testing after multi-process training.

    A DistributedSampler pads the test set with repeated segments, which would bias the pooled
    metrics; and a CSV logger re-created in the main process after ``ddp_spawn`` cannot append
    to the training's metrics file, so test metrics go to ``csv/test/metrics.csv``.
    """
    from pytorch_lightning.loggers import CSVLogger

    test_loggers = [logger for logger in loggers if not isinstance(logger, CSVLogger)]
    test_loggers.append(CSVLogger(cfg.paths.output_dir, name="csv", version="test"))
    return instantiate(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        sync_batchnorm=False,
        callbacks=[],
        logger=test_loggers,
    )


def _epochs_trained(trainer: pl.Trainer) -> float:
    """Epochs of optimisation done, fractional when training stopped mid-epoch (max_time)."""
    per_epoch = trainer.num_training_batches
    if not per_epoch or per_epoch == float("inf"):
        return float(trainer.current_epoch)
    steps_per_epoch = per_epoch / max(1, trainer.accumulate_grad_batches)
    return round(trainer.global_step / steps_per_epoch, 2)


def _best_score(trainer: pl.Trainer) -> float | None:
    """The best monitored validation score (e.g. val/mAP), None before any validation."""
    for callback in trainer.checkpoint_callbacks:
        score = getattr(callback, "best_model_score", None)
        if getattr(callback, "monitor", None) and score is not None:
            return float(score)
    return None


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The best checkpoint of the monitored ModelCheckpoint (not the every-epoch last.ckpt)."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) and getattr(callback, "best_model_path", ""):
            return callback.best_model_path
    return None
