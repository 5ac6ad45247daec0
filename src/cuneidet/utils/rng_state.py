"""Random state in the checkpoints, so that a resumed run draws what an uninterrupted one draws.

Lightning restores the weights, the optimizer, the schedule and the loop counters from a
checkpoint, but not the random state: a run resumed from ``last.ckpt`` (``ckpt_path=last``, a
pipeline's unfinished training stage) would shuffle and augment its next epoch from the state
of a fresh process (``seed_everything`` and the augmentation pipeline seeded anew by
``train_dataloader()``), i.e. train on other batches and crops than the run it continues.

:class:`ResumableRandomState` saves, with every checkpoint, the global generators (Python,
NumPy, torch, CUDA) and the generators of the training set's augmentation pipeline
(albumentations transforms keep their own; with ``num_workers=0`` they live in this process), and
puts them back at the start of the first epoch after a resume. It also recreates that epoch's
loader iterator, which Lightning built from the fresh process's state before any hook ran (the
iterator draws the loader's base seed, which seeds the workers; the sampler draws its
permutation on the first batch). An uninterrupted run is not changed by it.

``scripts/kill_resume.py`` and ``tests/integration/test_kill_resume.py`` check the result: a run
killed (SIGKILL) and resumed ends with the same weights and metrics as one never stopped.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

KEY = "cuneidet_random_state"
_CONTAINERS = ("dataset", "datasets", "transform", "transforms")


def global_state() -> dict[str, Any]:
    """The state of Python's, NumPy's, torch's (and CUDA's) global generators, in plain types
    and tensors (checkpoints load with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (
            str(name),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generators(root: Any, max_depth: int = 6) -> dict[str, random.Random | np.random.Generator]:
    """The generators held by ``root`` (a dataset) and what it contains (``dataset``,
    ``datasets``, ``transform``, ``transforms``: subsets, concatenations, albumentations
    pipelines), by attribute path, e.g. ``transform.transforms.0.py_random``."""
    found: dict[str, random.Random | np.random.Generator] = {}
    seen: set[int] = set()

    def visit(obj: Any, path: str, depth: int) -> None:
        if obj is None or id(obj) in seen or depth > max_depth:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for index, item in enumerate(obj):
                visit(item, f"{path}.{index}", depth + 1)
            return
        attributes = getattr(obj, "__dict__", None)
        if not isinstance(attributes, dict):
            return
        for name, value in sorted(attributes.items()):
            if isinstance(value, (random.Random, np.random.Generator)):
                found[f"{path}.{name}".lstrip(".")] = value
            elif name in _CONTAINERS:
                visit(value, f"{path}.{name}", depth + 1)

    visit(root, "", 0)
    return found


def generator_states(root: Any) -> dict[str, Any]:
    return {
        path: gen.getstate() if isinstance(gen, random.Random) else gen.bit_generator.state
        for path, gen in generators(root).items()
    }


def set_generator_states(root: Any, states: dict[str, Any]) -> int:
    """Put saved generator states back where the same attribute paths exist; returns how many."""
    restored = 0
    for path, gen in generators(root).items():
        if path not in states:
            continue
        if isinstance(gen, random.Random):
            gen.setstate(states[path])
        else:
            gen.bit_generator.state = states[path]
        restored += 1
    return restored


def _train_dataset(trainer: pl.Trainer) -> Any:
    loaders = trainer.train_dataloader
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if len(loaders) == 1 else None
    return getattr(loaders, "dataset", None)


class ResumableRandomState(pl.Callback):
    """Saves the random state with each checkpoint and restores it when training resumes."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self.enabled:
            return
        checkpoint[KEY] = {
            "global": global_state(),
            "train_data": generator_states(_train_dataset(trainer)),
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.enabled and trainer.training:
            self._pending = checkpoint.get(KEY)
            if self._pending is None:
                log.warning("the checkpoint holds no random state: the resumed run draws anew")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        set_global_state(state["global"])
        restored = set_generator_states(_train_dataset(trainer), state.get("train_data") or {})
        loop = trainer.fit_loop
        # An uninterrupted run builds each later epoch's iterator after this hook (the fit
        # loop's own condition below); after a resume Lightning reuses the iterator it built
        # before the state was back, so it is built again here from the restored state.
        rebuilds = trainer.current_epoch > 0 and not loop.is_resuming
        fetcher = getattr(loop, "_data_fetcher", None)
        if not (rebuilds and not loop.epoch_loop.restarting) and fetcher is not None:
            iter(fetcher)
        log.info(
            "random state of the checkpoint restored (global generators, %d of the training "
            "data's) at epoch %d",
            restored,
            trainer.current_epoch,
        )


__all__ = [
    "ResumableRandomState",
    "generator_states",
    "generators",
    "global_state",
    "set_generator_states",
    "set_global_state",
]
