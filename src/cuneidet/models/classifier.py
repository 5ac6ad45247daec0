"""The sign classifier network: EfficientNet-Lite on 1-channel crops, class 0 = background."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.models.checkpoint_file import read_checkpoint
from cuneidet.models.efficientnet_lite import EfficientNetLite, imagenet_efficientnet_lite


class SignClassifierNet(nn.Module):
    """``[N, 1, S, S]`` crops → ``[N, num_classes]`` logits (column 0: not a sign).

    ``body`` keeps the EfficientNet parameter names, so a detector with an EfficientNet-Lite
    backbone can start from it (``init_backbone_from``).
    """

    def __init__(
        self,
        num_classes: int = 240,
        variant: str = "lite0",
        pretrained: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(
                f"the classifier needs >= 2 classes (0 = background), got {num_classes}"
            )
        self.num_classes = num_classes
        self.body = (
            imagenet_efficientnet_lite(variant) if pretrained else EfficientNetLite(variant, 1)
        )
        del self.body._fc
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.body.num_features, num_classes)

    def forward(self, crops: Tensor) -> Tensor:
        return self.fc(self.dropout(self.body.forward_features(crops)))


def _checkpoint_state(path: Path, what: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise DataNotFoundError(
            f"{what}={path} does not exist; give the best.ckpt of a cuneidet-classify run"
        )
    checkpoint = read_checkpoint(path)
    return checkpoint.get("state_dict", checkpoint)


def classifier_state(path: str | Path, what: str = "init_classifier_from") -> dict[str, Tensor]:
    """The ``SignClassifierNet`` weights of a cuneidet-classify checkpoint (``net.*`` keys)."""
    path = Path(path)
    state = _checkpoint_state(path, what)
    prefix = "net."
    found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not found or "fc.weight" not in found:
        kinds = sorted({k.split(".")[0] for k in state})
        raise ConfigError(
            f"{what}={path} is not a sign-classifier checkpoint (its weights are {kinds}, no "
            "net.fc); train one with cuneidet-classify"
        )
    return found


def load_classifier_weights(net: SignClassifierNet, path: str | Path) -> None:
    """Load a cuneidet-classify checkpoint into ``net``; the class count must match."""
    state = classifier_state(path)
    classes = state["fc.weight"].shape[0]
    if classes != net.num_classes:
        raise ConfigError(
            f"init_classifier_from={path} has {classes} classes, this model {net.num_classes}; "
            "train the classifier with the same model.num_classes"
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ConfigError(
            f"init_classifier_from={path} does not match this classifier (another EfficientNet "
            f"variant?): {error}"
        ) from error


def load_backbone_from_classifier(body: nn.Module, path: str | Path) -> int:
    """Copy a classifier's EfficientNet body into a detector's ``body``; returns tensors copied.

    Every parameter of ``body`` must exist with the same shape in the classifier (the same
    EfficientNet variant); the classifier's head is not used.
    """
    state = classifier_state(path, "init_backbone_from")
    body_state = {k[len("body.") :]: v for k, v in state.items() if k.startswith("body.")}
    own = body.state_dict()
    missing = [k for k in own if k not in body_state]
    wrong = [k for k in own if k in body_state and body_state[k].shape != own[k].shape]
    if missing or wrong:
        raise ConfigError(
            f"init_backbone_from={path}: the classifier's body does not fit this backbone "
            f"(missing {missing[:3]}, other shapes {wrong[:3]}); use a classifier of the same "
            "EfficientNet variant (model/backbone=efficientnet_lite0 with a lite0 classifier)"
        )
    body.load_state_dict({k: body_state[k] for k in own}, strict=True)
    return len(own)
