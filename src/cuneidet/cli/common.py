"""The Hydra entry points' task wrapper: input errors end as messages, not tracebacks."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from cuneidet.errors import CuneidetError
from cuneidet.utils.loggers import finish_wandb

log = logging.getLogger("cuneidet")


def task_wrapper(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run a task; a cuneidet input/config error ends with its message (exit 2), not a traceback.

    W&B is always closed so the next job of a multirun starts a fresh run.
    """

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except CuneidetError as error:
            log.error("%s", error)
            sys.exit(2)
        except MissingMandatoryValue as error:
            key = error.full_key or "a setting"
            log.error("missing required setting %s: add %s=<value> to the command line", key, key)
            sys.exit(2)
        finally:
            finish_wandb()
            log.info("output dir: %s", cfg.paths.output_dir)

    return wrapped
