"""Render many tablets in parallel: a process pool, a progress bar, a cache and a report."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import cv2
from tqdm.auto import tqdm

from cuneidet.forge.layout import TabletSpec
from cuneidet.forge.store import Forge

log = logging.getLogger(__name__)

_WORKER_FORGE: Forge | None = None


@dataclass
class ForgeReport:
    requested: int = 0
    rendered: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1
    signs: int = 0

    @property
    def tablets_per_s(self) -> float:
        return len(self.rendered) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "rendered": len(self.rendered),
            "cached": len(self.cached),
            "failed": len(self.failed),
            "failures": self.failed,
            "signs_rendered": self.signs,
            "seconds": round(self.seconds, 2),
            "workers": self.workers,
            "tablets_per_s": round(self.tablets_per_s, 3),
            "tablets_per_s_per_worker": round(self.tablets_per_s / max(self.workers, 1), 3),
        }


def _init_worker(forge: Forge) -> None:
    global _WORKER_FORGE
    cv2.setNumThreads(1)
    _WORKER_FORGE = forge


def _render_in_worker(spec: TabletSpec) -> int:
    assert _WORKER_FORGE is not None
    photo = _WORKER_FORGE.render_spec(spec)
    _WORKER_FORGE.save(spec.tablet, photo)
    return sum(len(v.signs) for v in photo.views)


def render_many(
    forge: Forge,
    tablets: Sequence[str],
    workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> ForgeReport:
    """Render ``tablets`` (cached ones skipped unless ``overwrite``); failures are counted.

    ``workers``: processes (0 = one per CPU core; 1 = in this process).
    """
    report = ForgeReport(requested=len(tablets))
    todo = []
    for tablet in tablets:
        if not overwrite and forge.is_rendered(tablet):
            report.cached.append(tablet)
        else:
            todo.append(tablet)
    workers = workers or os.cpu_count() or 1
    report.workers = max(1, min(workers, len(todo))) if todo else 1
    forge.write_settings()
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="forge", unit="tablet", disable=not progress)
    if report.workers == 1:
        _init_worker(forge)
        for tablet in todo:
            _collect(report, tablet, lambda t=tablet: _render_in_worker(forge.planner.spec(t)))
            bar.update()
    else:
        specs = {t: forge.planner.spec(t) for t in todo}
        # spawn, not fork: forking a process that runs OpenCV/BLAS threads can deadlock
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            report.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(_portable(forge),),
        ) as pool:
            futures = {pool.submit(_render_in_worker, specs[t]): t for t in todo}
            for future in as_completed(futures):
                _collect(report, futures[future], future.result)
                bar.update()
    bar.close()
    report.seconds = time.perf_counter() - start
    if report.failed:
        log.warning(
            "forge: %d of %d tablets failed: %s",
            len(report.failed),
            len(todo),
            "; ".join(f"{t}: {e}" for t, e in list(report.failed.items())[:5]),
        )
    return report


def _collect(report: ForgeReport, tablet: str, run: Any) -> None:
    try:
        report.signs += int(run())
    except Exception as exc:  # a batch job goes on; every failure is counted and named
        report.failed[tablet] = f"{type(exc).__name__}: {exc}"
    else:
        report.rendered.append(tablet)


def _portable(forge: Forge) -> Forge:
    """A copy without the (large, rebuildable) CSDD tables, for sending to workers."""
    copy = Forge.__new__(Forge)
    copy.__dict__.update(forge.__dict__)
    copy._csdd = None
    copy._planner = None
    copy._bank = None
    return copy


__all__ = ["ForgeReport", "render_many"]
