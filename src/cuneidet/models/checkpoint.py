"""Rebuild a LightningModule from a cuneidet checkpoint (model config + weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.models.checkpoint_file import read_checkpoint
from cuneidet.models.module import DetectorModule
from cuneidet.models.watershed import WatershedHead
from cuneidet.utils.instantiate import instantiate


def rebuild_module(ckpt_path: str | Path, map_location: str = "cpu") -> Any:
    """The LightningModule of a ``cuneidet-train`` checkpoint, rebuilt from its model config."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise DataNotFoundError(
            f"checkpoint {path} does not exist; pass ckpt_path=<run>/checkpoints/best.ckpt "
            "(or last.ckpt) of a cuneidet-train run"
        )
    checkpoint = read_checkpoint(path, map_location)
    model_config = (checkpoint.get("cuneidet") or {}).get("model_config")
    if not model_config:
        raise ConfigError(
            f"{path} has no cuneidet model config; was it written by cuneidet-train? "
            "For the released fpn_net_vA/vF.pth weights use cuneidet.models.reference_weights"
        )
    # the weights come from the checkpoint: no ImageNet weights are read to build the network
    module = instantiate(OmegaConf.create(_without_pretrained(model_config)))
    module.model_config = model_config
    module.load_state_dict(checkpoint["state_dict"], strict=True)
    if hasattr(module, "sign_height"):
        module.sign_height = float(checkpoint["cuneidet"].get("sign_height", 128.0))
    return module.eval()


def _without_pretrained(config: Any) -> Any:
    """A copy of a model config with every ``pretrained`` switched off."""
    if isinstance(config, dict):
        return {
            k: (False if k == "pretrained" else _without_pretrained(v)) for k, v in config.items()
        }
    if isinstance(config, list):
        return [_without_pretrained(v) for v in config]
    return config


def load_module(
    ckpt_path: str | Path,
    map_location: str = "cpu",
    inference: Any = None,
    recogniser: Any = None,
    watershed: Any = None,
) -> DetectorModule:
    """Load a sign-detector checkpoint written by ``cuneidet-train``.

    ``inference`` (a dict or DictConfig from the command line) overrides the checkpoint's
    inference settings as :func:`inference_overrides` describes; ``recogniser`` sets attributes
    of a two-stage recogniser (``top_k``, ``tta_contexts``, ``loc_score_thresh``, …);
    ``watershed`` the decoding of a watershed head (``cut_level``, ``min_pixels``, …).
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
    if isinstance(recogniser, DictConfig):
        recogniser = OmegaConf.to_container(recogniser, resolve=True)
    recogniser = {k: v for k, v in (recogniser or {}).items() if v is not None}
    if recogniser:
        set_recogniser(module, recogniser, ckpt_path)
    if isinstance(watershed, DictConfig):
        watershed = OmegaConf.to_container(watershed, resolve=True)
    watershed = {k: v for k, v in (watershed or {}).items() if v is not None}
    if watershed:
        set_watershed(module, watershed, ckpt_path)
    return module


RECOGNISER_SETTINGS = (
    "top_k",
    "tta_contexts",
    "loc_score_thresh",
    "loc_nms_thresh",
    "max_boxes",
    "loc_power",
)


def set_recogniser(module: DetectorModule, settings: Any, ckpt_path: str | Path) -> None:
    """Override inference settings of a two-stage recogniser (``recogniser.top_k=10`` …)."""
    if isinstance(settings, DictConfig):
        settings = OmegaConf.to_container(settings, resolve=True)
    detector = module.detector
    if not hasattr(detector, "classifier"):
        raise ConfigError(
            f"recogniser.* settings apply to two-stage recognisers; {ckpt_path} holds a "
            f"{type(detector).__name__}: use inference.* instead"
        )
    for key, value in dict(settings).items():
        if key not in RECOGNISER_SETTINGS:
            raise ConfigError(f"recogniser.{key} is unknown; choose from {RECOGNISER_SETTINGS}")
        if key == "tta_contexts":
            value = [float(v) for v in value] if value else [detector.context]
        setattr(detector, key, value)


WATERSHED_SETTINGS = ("cut_level", "cut_on", "min_pixels", "class_from", "top_k")


def set_watershed(module: DetectorModule, settings: Any, ckpt_path: str | Path) -> None:
    """Override the decoding of a watershed head, the detector's or the recogniser's localiser
    (``watershed.cut_level=4`` …); the values are checked as the head's constructor does."""
    detector = module.detector
    head = getattr(getattr(detector, "localiser", detector), "head", None)
    if not isinstance(head, WatershedHead):
        raise ConfigError(
            f"watershed.* settings apply to watershed heads; {ckpt_path} has a "
            f"{type(head).__name__}"
        )
    unknown = set(settings) - set(WATERSHED_SETTINGS)
    if unknown:
        raise ConfigError(
            f"watershed.{sorted(unknown)[0]} is unknown; choose from {WATERSHED_SETTINGS}"
        )
    current = {key: getattr(head, key) for key in WATERSHED_SETTINGS}
    checked = WatershedHead(levels=head.levels, **{**current, **dict(settings)})
    for key in settings:
        setattr(head, key, getattr(checked, key))


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
    checkpoint = read_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"init_from={path}: its network does not match model=… of this run ({exc}); "
            "use the same model (and its backbone, head, num_classes or line_arch)"
        ) from exc
    return module


def init_backbone(module: pl.LightningModule, ckpt_path: str | Path) -> int:
    """Copy a sign classifier's EfficientNet body into the detector's backbone (the localiser's,
    for the two-stage recogniser); returns the number of tensors copied."""
    from cuneidet.models.classifier import load_backbone_from_classifier
    from cuneidet.models.efficientnet_lite import EfficientNetLite

    detector = getattr(module, "detector", None)
    detector = getattr(detector, "localiser", detector)
    body = getattr(getattr(detector, "fpn", None), "body", None)
    if not isinstance(body, EfficientNetLite):
        raise ConfigError(
            f"init_backbone_from={ckpt_path} needs a detector with an EfficientNet-Lite backbone "
            f"(model/backbone=efficientnet_lite0 or model=two_stage), not {type(body).__name__}"
        )
    return load_backbone_from_classifier(body, ckpt_path)


def init_classifier(module: pl.LightningModule, ckpt_path: str | Path) -> None:
    """Load a cuneidet-classify checkpoint into the naming stage of a two-stage recogniser."""
    from cuneidet.models.classifier import load_classifier_weights

    classifier = getattr(getattr(module, "detector", None), "classifier", None)
    if classifier is None:
        raise ConfigError(
            f"init_classifier_from={ckpt_path} needs model=two_stage (a recogniser with a "
            f"classifier), not {type(getattr(module, 'detector', module)).__name__}; for a "
            "one-stage detector use init_backbone_from"
        )
    load_classifier_weights(classifier, ckpt_path)


_OPTIONAL_INFERENCE = ("pre_nms_topk", "max_detections", "class_agnostic_nms")


def inference_overrides(settings: dict | None) -> dict:
    """Command-line inference settings: ``None`` keeps the checkpoint's, 0 disables a cap."""
    overrides = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        overrides[key] = None if key in _OPTIONAL_INFERENCE and value == 0 else value
    return overrides
