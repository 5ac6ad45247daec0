"""Rebuild a LightningModule from a cuneidet checkpoint (model config + weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.models.module import DetectorModule
from cuneidet.utils.instantiate import instantiate


def rebuild_module(ckpt_path: str | Path, map_location: str = "cpu") -> Any:
    """The LightningModule of a ``cuneidet-train`` checkpoint, rebuilt from its model config."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise DataNotFoundError(
            f"checkpoint {path} does not exist; pass ckpt_path=<run>/checkpoints/best.ckpt "
            "(or last.ckpt) of a cuneidet-train run"
        )
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    model_config = (checkpoint.get("cuneidet") or {}).get("model_config")
    if not model_config:
        raise ConfigError(
            f"{path} has no cuneidet model config; was it written by cuneidet-train? "
            "For the released fpn_net_vA/vF.pth weights use cuneidet.models.reference_weights"
        )
    module = instantiate(OmegaConf.create(model_config))
    module.model_config = model_config
    module.load_state_dict(checkpoint["state_dict"], strict=True)
    return module.eval()


def load_module(
    ckpt_path: str | Path, map_location: str = "cpu", inference: Any = None
) -> DetectorModule:
    """Load a sign-detector checkpoint written by ``cuneidet-train``.

    ``inference`` (a dict or DictConfig from the command line) overrides the checkpoint's
    inference settings as :func:`inference_overrides` describes.
    """
    module = rebuild_module(ckpt_path, map_location)
    if not isinstance(module, DetectorModule):
        raise ConfigError(
            f"{ckpt_path} holds a {type(module).__name__}, not a sign detector; "
            "line-network checkpoints are used by cuneidet-lines"
        )
    if isinstance(inference, DictConfig):
        inference = OmegaConf.to_container(inference, resolve=True)
    module.inference.update(inference_overrides(inference))
    return module


def load_weights(module: pl.LightningModule, ckpt_path: str | Path) -> pl.LightningModule:
    """Initialise ``module`` from another run's weights (fine-tuning; optimizer state not kept).

    The networks must match (same kind of model, backbone, head and number of classes).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise DataNotFoundError(
            f"init_from={path} does not exist; give the best.ckpt or last.ckpt of a "
            "cuneidet-train run (e.g. a forge-pretraining run)"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict", checkpoint)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"init_from={path}: its network does not match model=… of this run ({exc}); "
            "use the same model (and its backbone, head, num_classes or line_arch)"
        ) from exc
    return module


_OPTIONAL_INFERENCE = ("pre_nms_topk", "max_detections", "class_agnostic_nms")


def inference_overrides(settings: dict | None) -> dict:
    """Command-line inference settings: ``None`` keeps the checkpoint's, 0 disables a cap."""
    overrides = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        overrides[key] = None if key in _OPTIONAL_INFERENCE and value == 0 else value
    return overrides
