"""``cuneidet-train``: fit on tiles, select on validation mAP, test the best checkpoint."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cuneidet.cli.common import task_wrapper
from cuneidet.config import config_dir
from cuneidet.training import train


def train_and_score(cfg: DictConfig) -> float | None:
    """Train as configured; the ``optimized_metric`` for sweepers (Optuna), None without it."""
    metrics = task_wrapper(train)(cfg)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name and metrics else None


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train_and_score(cfg)


if __name__ == "__main__":
    main()
