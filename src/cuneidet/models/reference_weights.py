"""The paper configuration and loading of the released ``fpn_net_vA/vF.pth`` weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from cuneidet.errors import CuneidetError
from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.detector import SignDetector
from cuneidet.models.heads import SSDHead
from cuneidet.models.necks import PaperFPN

_MAX_LISTED = 12


class ReferenceWeightsError(CuneidetError, ValueError):
    """A reference state dict does not fit the model (missing/unexpected keys, shapes)."""


def paper_detector(num_classes: int = 240, width_mult: float = 0.625) -> SignDetector:
    """The reference FPNSSD: PaperFPN (w = 0.625, P5/P6), SSD heads, 12 anchors, 240 classes."""
    return SignDetector(PaperFPN(width_mult=width_mult), SSDHead(), AnchorGenerator(), num_classes)


def _read_state_dict(path_or_state_dict: str | Path | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(path_or_state_dict, Mapping):
        state = dict(path_or_state_dict)
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise ReferenceWeightsError(f"reference weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ReferenceWeightsError(
                f"could not read {path} as a PyTorch state dict ({type(err).__name__}: {err})"
            ) from err
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ReferenceWeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    prefix = "module."  # DataParallel wrapper
    return {k.removeprefix(prefix): v for k, v in state.items()}


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"\n  {title} ({len(items)}): {shown}{more}"


def load_reference_weights(
    detector: SignDetector,
    path_or_state_dict: str | Path | Mapping[str, Tensor],
    strict: bool = True,
) -> SignDetector:
    """Load a released reference checkpoint (a plain state dict) into ``detector``.

    A ``module.`` prefix is stripped. With ``strict=True`` any missing or unexpected key or
    shape mismatch raises :class:`ReferenceWeightsError` listing them; with ``strict=False`` the
    matching tensors are loaded and the rest is skipped. Returns ``detector``.
    """
    state = _read_state_dict(path_or_state_dict)
    own = detector.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    if strict and (missing or unexpected or mismatched):
        message = "the reference weights do not fit the paper detector configuration"
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                message += _listing(title, items)
        message += (
            "\n  The released fpn_net_vA/vF.pth need paper_detector() (width 0.625, 1 channel, "
            "P5/P6, 12 anchors, 240 classes)."
        )
        raise ReferenceWeightsError(message)
    bad = {m.split(":", 1)[0] for m in mismatched}
    loadable = {k: v for k, v in state.items() if k in own and k not in bad}
    detector.load_state_dict(loadable, strict=strict)
    return detector
