"""The one place that calls ``hydra.utils.instantiate`` (an allow-list is a one-line change)."""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from cuneidet.errors import ConfigError

log = logging.getLogger(__name__)


def instantiate(config: Any, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` config; errors name the target and the config keys."""
    if isinstance(config, dict):
        config = OmegaConf.create(config)
    # plain lists/dicts reach the constructors (checkpoints then hold no OmegaConf objects)
    kwargs.setdefault("_convert_", "all")
    try:
        return hydra.utils.instantiate(config, **kwargs)
    except hydra.errors.InstantiationException as error:
        target = config.get("_target_", "?") if isinstance(config, DictConfig) else "?"
        raise ConfigError(f"could not build {target}: {error}") from error


def instantiate_list(config: DictConfig | ListConfig | None) -> list[Any]:
    """Build every entry of a group such as ``callbacks`` or ``logger`` that has a ``_target_``."""
    if not config:
        return []
    entries = config.values() if isinstance(config, DictConfig) else config
    built = []
    for entry in entries:
        if isinstance(entry, DictConfig) and "_target_" in entry:
            log.info("instantiating <%s>", entry._target_)
            built.append(instantiate(entry))
    return built
