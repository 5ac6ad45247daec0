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
    """Resolvers used in configs: ``${join:${data.train_sets}}`` → "train_full+saa05",
    ``${cwd:}`` → the launch directory (unlike ``${hydra:runtime.cwd}`` it also resolves where
    a multirun sweeper builds its sweep folder, before any job has a Hydra runtime), and
    ``${per_sign:48,${data.sign_height},64}`` → 48 px at 64-px signs rescaled to the working
    sign height (anchor sizes that follow ``data.sign_height``); ``${first_set:a,b}`` → the
    first value that is set (neither null nor "None")."""
    if not OmegaConf.has_resolver("join"):
        OmegaConf.register_new_resolver("join", lambda items, sep="+": sep.join(map(str, items)))
    if not OmegaConf.has_resolver("cwd"):
        OmegaConf.register_new_resolver("cwd", os.getcwd)
    if not OmegaConf.has_resolver("first_set"):
        OmegaConf.register_new_resolver("first_set", first_set)
    if not OmegaConf.has_resolver("per_sign"):
        OmegaConf.register_new_resolver("per_sign", per_sign)


def first_set(*values: object) -> object:
    """The first of ``values`` that is neither None nor "None" (a Hydra choice left unset)."""
    return next((v for v in values if v is not None and str(v) != "None"), None)


def per_sign(size: float, sign_height: float, reference: float = 64.0) -> float:
    """``size`` (pixels at ``reference``-px signs) at signs ``sign_height`` px high."""
    if float(sign_height) <= 0 or float(reference) <= 0:
        raise ValueError(f"sign heights must be positive, got {sign_height} and {reference}")
    return float(size) * float(sign_height) / float(reference)


register_resolvers()
