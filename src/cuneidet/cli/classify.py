"""``cuneidet-classify``: train the sign classifier on crops, select on validation crops, test."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cuneidet.cli.train import train_and_score
from cuneidet.config import config_dir


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="classify")
def main(cfg: DictConfig) -> float | None:
    return train_and_score(cfg)


if __name__ == "__main__":
    main()
