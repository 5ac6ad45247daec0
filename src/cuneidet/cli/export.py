"""``cuneidet-export``: write a trained detector as ONNX graph(s) with a JSON sidecar."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from cuneidet.cli.common import task_wrapper
from cuneidet.cli.predict import label_map_or_none
from cuneidet.config import config_dir
from cuneidet.deploy.export import export_onnx
from cuneidet.deploy.sidecar import file_sha256
from cuneidet.errors import ConfigError
from cuneidet.models.checkpoint import load_module
from cuneidet.utils.provenance import command_line, git_commit, save_config

log = logging.getLogger("cuneidet.export")

FORMATS = ("onnx",)


def export(cfg: DictConfig) -> dict[str, Any]:
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format} is not supported; choose from {FORMATS}")
    save_config(cfg, Path(cfg.paths.output_dir))
    module = load_module(
        cfg.ckpt_path,
        inference=cfg.inference,
        recogniser=cfg.get("recogniser"),
        watershed=cfg.get("watershed"),
    )
    labels = label_map_or_none(cfg.paths.data_dir)
    classes = None
    if labels is not None:  # names, MZL numbers and glyphs of the classes the CSDD maps
        classes = {
            c: {"name": labels.name(c), "mzl": labels.mzl(c), "glyph": labels.glyph(c)}
            for c in range(1, module.detector.num_classes)
            if c in labels.label_to_mzl
        }
    sidecar = export_onnx(
        module.detector,
        Path(cfg.output),
        inference=dict(module.inference),
        classes=classes,
        source={
            "checkpoint": str(cfg.ckpt_path),
            "checkpoint_sha256": file_sha256(cfg.ckpt_path),
            "git_commit": git_commit(),
            "command": command_line(),
        },
        opset=cfg.opset,
        scale_auto={k: v for k, v in (cfg.get("scale_auto") or {}).items() if v is not None},
    )
    log.info("model: %s, sidecar: %s", cfg.output, sidecar)
    return {"model": str(cfg.output), "sidecar": str(sidecar)}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export")
def main(cfg: DictConfig) -> None:
    task_wrapper(export)(cfg)


if __name__ == "__main__":
    main()
