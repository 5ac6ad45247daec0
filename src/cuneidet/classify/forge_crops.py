"""Forge crops for the sign classifier: rendered examples of the classes the real boxes lack.

The 4,663 real train_full boxes give a median of six examples a class; half of the test classes
have five or fewer. The forge renders every transliterated sign of the CSDD collections with its
true box, so it can add examples of every class. :func:`forge_crop_bank` draws up to
``per_class`` of them a class (spread over tablets), cuts each with a margin wide enough for the
classifier's jitter, and returns the cut patches as small one-box :class:`SegmentSample` s, so
that the crop dataset treats them like any segment and the renders never sit in memory whole.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from skimage.exposure import match_histograms

from cuneidet.data.crops import crop_windows, warp_crop
from cuneidet.data.datasets import SegmentSample, load_segment_samples
from cuneidet.data.views import AnnotatedSegment
from cuneidet.forge.source import ForgeSource
from cuneidet.forge.store import Forge
from cuneidet.forge.supervision import truth_segments

log = logging.getLogger(__name__)

# a patch is the crop window × this margin: room for scale, shift and rotation jitter
PATCH_MARGIN = 1.8
# photographs decoded at once while cutting patches (bounds the memory)
LOAD_CHUNK = 64


def choose_boxes(
    labels_per_segment: Sequence[np.ndarray],
    tablets: Sequence[str],
    per_class: int,
    num_classes: int,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """Up to ``per_class`` ``(segment, box)`` indices of every class in 1..num_classes-1.

    Within a class the boxes are taken round-robin over tablets in random order, so that a few
    long tablets do not supply all the examples of a class.
    """
    if per_class <= 0:
        return []
    rng = np.random.default_rng(seed)
    by_class: dict[int, dict[str, list[tuple[int, int]]]] = {}
    for seg, (labels, tablet) in enumerate(zip(labels_per_segment, tablets, strict=True)):
        for box, label in enumerate(np.asarray(labels).tolist()):
            if 1 <= label < num_classes:
                by_class.setdefault(int(label), {}).setdefault(tablet, []).append((seg, box))
    chosen: list[tuple[int, int]] = []
    for label in sorted(by_class):
        groups = list(by_class[label].values())
        for group in groups:
            rng.shuffle(group)
        rng.shuffle(groups)
        taken = 0
        depth = 0
        while taken < per_class and any(depth < len(g) for g in groups):
            for group in groups:
                if depth < len(group) and taken < per_class:
                    chosen.append(group[depth])
                    taken += 1
            depth += 1
    return chosen


def cut_patch(sample: SegmentSample, box_index: int, context: float, key: str) -> SegmentSample:
    """A square patch around one box of ``sample`` (its window × :data:`PATCH_MARGIN`), the box
    in patch pixels."""
    box = sample.boxes[box_index].astype(np.float64)
    cx, cy, side = crop_windows(box, context)[0]
    size = max(8, math.ceil(side * PATCH_MARGIN))
    patch = warp_crop(sample.image, cx, cy, float(size), size)
    # patch pixel u samples image x = cx + (u + 0.5 - size/2): shift boxes by the inverse
    origin_x, origin_y = cx + 0.5 - size / 2.0, cy + 0.5 - size / 2.0
    local = box - np.array([origin_x, origin_y, origin_x, origin_y])
    return SegmentSample(
        key=key,
        name=sample.name,
        image=patch,
        boxes=local.astype(np.float32)[None, :],
        labels=sample.labels[box_index : box_index + 1].astype(np.int64),
        meta={**sample.meta, "forge_patch": True},
    )


def forge_crop_bank(
    forge: Forge,
    collections: Sequence[str],
    per_class: int,
    num_classes: int,
    context: float,
    scale_factor: float,
    exclude_tablets: set[str] | frozenset[str] = frozenset(),
    seed: int = 0,
    progress: bool = True,
) -> list[SegmentSample]:
    """Patches of up to ``per_class`` forged signs a class from ``collections`` (rendered where
    needed; ``exclude_tablets`` — validation and test tablets — left out)."""
    segments: list[AnnotatedSegment] = truth_segments(
        forge, list(collections), exclude_tablets=exclude_tablets, progress=progress
    )
    chosen = choose_boxes(
        [s.labels for s in segments], [s.tablet for s in segments], per_class, num_classes, seed
    )
    wanted: dict[int, list[int]] = {}
    for seg, box in chosen:
        wanted.setdefault(seg, []).append(box)
    order = sorted(wanted, key=lambda i: (segments[i].tablet, i))
    source = ForgeSource(forge)
    patches: list[SegmentSample] = []
    for start in range(0, len(order), LOAD_CHUNK):
        chunk = [segments[i] for i in order[start : start + LOAD_CHUNK]]
        loaded = {
            s.key: s
            for s in load_segment_samples(chunk, source, progress=False, scale_factor=scale_factor)
        }
        for index in order[start : start + LOAD_CHUNK]:
            sample = loaded.get(segments[index].key)
            if sample is None:
                continue
            for box in wanted[index]:
                patches.append(cut_patch(sample, box, context, f"{sample.key}#forge{box}"))
    classes = len({int(p.labels[0]) for p in patches})
    log.info(
        "forge crops: %d patches of %d classes from %d views of %s (at most %d a class)",
        len(patches),
        classes,
        len(wanted),
        list(collections),
        per_class,
    )
    return patches


def match_real_histograms(
    patches: Sequence[SegmentSample], references: Sequence[np.ndarray], seed: int = 0
) -> None:
    """Give every patch the grey-level histogram of a random real crop, in place.

    Forged clay is evenly lit mid grey with faint shadows, the photographs dark and contrasty
    (``docs``: forge vs real); matching the histograms removes that first-order gap while the
    wedges keep their shapes.
    """
    if not references:
        return
    rng = np.random.default_rng(seed)
    for patch in patches:
        reference = references[int(rng.integers(len(references)))]
        matched = match_histograms(patch.image, reference)
        patch.image = np.clip(np.rint(matched), 0, 255).astype(np.uint8)


__all__ = [
    "PATCH_MARGIN",
    "choose_boxes",
    "cut_patch",
    "forge_crop_bank",
    "match_real_histograms",
]
