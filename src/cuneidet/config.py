"""Where the Hydra configs live and the OmegaConf resolvers they use."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_ENV_VAR = "CUNEIDET_CONFIG_DIR"


def config_dir() -> str:
    """The configs folder: $CUNEIDET_CONFIG_DIR, the packaged copy (wheel), or the repository's."""
    candidates = []
    if os.environ.get(CONFIG_ENV_VAR):
        candidates.append(Path(os.environ[CONFIG_ENV_VAR]))
    here = Path(__file__).resolve().parent
    candidates += [here / "configs", here.parents[1] / "configs"]
    for candidate in candidates:
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"cuneidet configs not found (tried {tried}); set {CONFIG_ENV_VAR} to the configs folder"
    )


def register_resolvers() -> None:
    """Resolvers used in configs: ``${join:${data.train_sets}}`` → "train_full+saa05", and
    ``${cwd:}`` → the launch directory (unlike ``${hydra:runtime.cwd}`` it also resolves where
    a multirun sweeper builds its sweep folder, before any job has a Hydra runtime)."""
    if not OmegaConf.has_resolver("join"):
        OmegaConf.register_new_resolver("join", lambda items, sep="+": sep.join(map(str, items)))
    if not OmegaConf.has_resolver("cwd"):
        OmegaConf.register_new_resolver("cwd", os.getcwd)


register_resolvers()
