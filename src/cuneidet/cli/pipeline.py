"""``cuneidet-pipeline``: the iterative weak-supervision loop as a Hydra app.

Each stage writes ``outputs/pipelines/<name>/iter_<k>/<stage>/`` with a manifest; a rerun skips
finished stages, so ``-m pipeline.iteration=0,1,2,3`` chains the iterations and a killed run
resumes where it stopped.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from cuneidet.cli.common import task_wrapper
from cuneidet.config import config_dir
from cuneidet.utils.provenance import save_config

log = logging.getLogger("cuneidet.pipeline")


def pipeline_app(cfg: DictConfig) -> dict[str, Any]:
    from cuneidet.pipeline.run import run_pipeline

    save_config(cfg, cfg.paths.output_dir)
    summary = run_pipeline(cfg)
    log.info("pipeline %s, iteration %s: %s", cfg.pipeline.name, cfg.pipeline.iteration, summary)
    return summary


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="pipeline")
def main(cfg: DictConfig) -> float | None:
    summary = task_wrapper(pipeline_app)(cfg)
    value = (summary or {}).get("train/test_mAP")
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
