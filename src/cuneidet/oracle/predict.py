"""Ranking a drawing with a trained oracle-bone classifier (``cuneidet-oracle predict``, the web
app's draw page)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cuneidet.data.datasets import to_input_tensor
from cuneidet.data.glyphs import glyph_input
from cuneidet.errors import DataNotFoundError, ModelFileError
from cuneidet.models.checkpoint import rebuild_module
from cuneidet.models.checkpoint_file import read_checkpoint
from cuneidet.oracle.module import OracleClassifier

#: where cuneidet-train experiment=oracle_bone writes its best checkpoint
DEFAULT_CHECKPOINT = Path("outputs/oracle_bone/checkpoints/best.ckpt")


@dataclass
class OracleModel:
    """A trained :class:`OracleClassifier` with its character set."""

    module: OracleClassifier
    charset: list[str]
    input_size: int
    source: Path

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The network input of a drawing (uint8, black ink on white), as training images get it."""
        return glyph_input(image, self.input_size)

    def rank(self, image: np.ndarray, top: int = 10) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The ``top`` most likely characters of a drawing (RGB/grey array, dark ink on light
        ground), best first, with calibrated probabilities; and the input the model saw."""
        prepared = self.prepare(image)
        with torch.inference_mode():
            probs = self.module(to_input_tensor(prepared)[None])[0]
        values, indices = probs.topk(min(top, len(self.charset)))
        ranking = [
            {"rank": r + 1, "label": int(i), "name": self.charset[int(i)], "probability": float(p)}
            for r, (p, i) in enumerate(zip(values.tolist(), indices.tolist(), strict=True))
        ]
        return ranking, prepared


def load_oracle_model(path: str | Path, expected_charset: list[str] | None = None) -> OracleModel:
    """The classifier of a ``cuneidet-train experiment=oracle_bone`` checkpoint.

    A checkpoint of another kind, one whose outputs do not match its character set, or (with
    ``expected_charset``) one trained on another character set is refused with the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"no oracle-bone model at {path}; train one with cuneidet-train "
            "experiment=oracle_bone (it writes outputs/oracle_bone/checkpoints/best.ckpt)"
        )
    checkpoint = read_checkpoint(path)  # a damaged or foreign file: ModelFileError
    meta = (checkpoint.get("cuneidet") or {}).get("oracle")
    if not meta or not meta.get("charset"):
        raise ModelFileError(
            f"{path} is not an oracle-bone model (it has no character set); train one with "
            "cuneidet-train experiment=oracle_bone"
        )
    module = rebuild_module(path)
    if not isinstance(module, OracleClassifier):
        raise ModelFileError(f"{path} holds a {type(module).__name__}, not an OracleClassifier")
    charset = list(meta["charset"])
    if module.num_classes != len(charset):
        raise ModelFileError(
            f"{path}: the network has {module.num_classes} outputs but its character set "
            f"{len(charset)} characters; the checkpoint is damaged, retrain it"
        )
    if expected_charset is not None and charset != list(expected_charset):
        missing = len(set(expected_charset) - set(charset))
        raise ModelFileError(
            f"{path} was trained on another character set ({len(charset)} characters; "
            f"{missing} of the index's {len(expected_charset)} are not among them): retrain "
            "it on this index with cuneidet-train experiment=oracle_bone"
        )
    return OracleModel(module.eval(), charset, int(meta.get("input_size", 64)), path)
