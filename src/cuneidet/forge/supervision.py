"""Supervised-on-forge: forged views with their hidden truth as training annotations.

Only used when a config asks for it explicitly (``data.forge_train_collections``); the weak
pipeline itself never trains on the forge's truth, it only measures alignment against it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from cuneidet.data.tables import parse_bbox_column
from cuneidet.data.views import AnnotatedSegment, segment_from_row
from cuneidet.forge.runner import render_many
from cuneidet.forge.store import Forge

log = logging.getLogger(__name__)


def truth_segments(
    forge: Forge,
    collections: Sequence[str],
    exclude_tablets: set[str] | frozenset[str] = frozenset(),
    workers: int = 0,
    progress: bool = True,
) -> list[AnnotatedSegment]:
    """Assigned views of ``collections`` with the forge's visible signs (status 1 or 2) as boxes.

    Tablets are rendered first where needed; ``exclude_tablets`` (e.g. the test tablets) are
    left out. Views without a visible sign are skipped.
    """
    tablets = [
        t for t in forge.planner.tablets_of(collections=collections) if t not in exclude_tablets
    ]
    report = render_many(forge, tablets, workers=workers, progress=progress)
    rendered = sorted(set(report.rendered) | set(report.cached))
    truth = forge.truth(rendered)
    truth = truth[truth["collection"].isin(list(collections)) & (truth["status"] > 0)]
    if truth.empty:
        log.warning("forge truth of %s has no visible signs", list(collections))
        return []
    segments = forge.csdd.segments(list(collections), assigned_only=True)
    index = segments.set_index(["collection", "segm_idx"])
    result = []
    for (collection, segm_idx), group in truth.groupby(["collection", "segm_idx"], sort=True):
        if (collection, segm_idx) not in index.index:
            continue
        row = {
            **index.loc[(collection, segm_idx)].to_dict(),
            "collection": collection,
            "segm_idx": segm_idx,
        }
        boxes = parse_bbox_column(
            group["relative_bbox"], forge.truth_path(str(row["tablet_CDLI"])), "relative_bbox"
        )
        result.append(
            segment_from_row(
                row, boxes=boxes.astype(np.float32), labels=group["train_label"].to_numpy(np.int64)
            )
        )
    log.info(
        "supervised-on-forge: %d views, %d signs from %s",
        len(result),
        sum(len(s.labels) for s in result),
        list(collections),
    )
    return result


__all__ = ["truth_segments"]
