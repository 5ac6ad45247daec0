"""Hand-drawn cuneiform signs as input to the sign classifier, which learned from photographs.

A drawing (dark strokes on white) is binarised and cropped to its ink like an oracle-bone
drawing, with the recogniser's crop context around it, then painted in the grey levels of the
training crops: the clay ground at :data:`CLAY_GREY` and the strokes at :data:`SHADOW_GREY`,
the median and the 5th percentile of 400 random train_full sign crops (photo grey levels). The
domain gap stays large (strokes against impressed wedges): ``scripts/eval_draw_cuneiform.py``
measures it on the Noto Sans Cuneiform glyphs rendered as drawings.
"""

from __future__ import annotations

import numpy as np
import torch

from cuneidet.data.datasets import to_input_tensor
from cuneidet.data.glyphs import fit_ink, ink_map, to_gray

CLAY_GREY = 113.0
SHADOW_GREY = 22.0


def drawing_crop(image: np.ndarray, crop_size: int = 64, context: float = 1.3) -> np.ndarray:
    """uint8 ``[crop_size, crop_size]`` classifier input of a drawing (see the module doc)."""
    ink = fit_ink(ink_map(to_gray(image)), crop_size, margin=(context - 1.0) / 2)
    return np.round(CLAY_GREY + (SHADOW_GREY - CLAY_GREY) * ink).astype(np.uint8)


def rank_signs(classifier, crop: np.ndarray, top: int = 10) -> list[tuple[int, float]]:
    """``(train_label, probability)`` of the ``top`` sign classes of one crop, best first; the
    probabilities are the softmax over the sign classes (the background column left out)."""
    with torch.inference_mode():
        logits = classifier(to_input_tensor(crop)[None])[0]
    probs = torch.softmax(logits[1:].float(), dim=0)
    values, indices = probs.topk(min(top, len(probs)))
    return [(int(i) + 1, float(p)) for p, i in zip(values.tolist(), indices.tolist(), strict=True)]
