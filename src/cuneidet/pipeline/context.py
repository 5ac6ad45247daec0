"""What every stage of one pipeline run shares: the config, the CSDD, the weak views, the photo
source, the stage runner and (read once) the truth of the generated labels."""

from __future__ import annotations

import dataclasses
from functools import cached_property

from omegaconf import DictConfig, OmegaConf

from cuneidet.data.csdd import CSDD
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.sources import PhotoSource, build_photo_source
from cuneidet.data.views import annotated_segments
from cuneidet.forge.store import Forge
from cuneidet.pipeline.quality import ViewTruth, forge_truth, real_truth
from cuneidet.pipeline.stages import StageRunner
from cuneidet.pipeline.views import WeakView, select_weak_views
from cuneidet.utils.provenance import command_line, git_commit, hardware_description


@dataclasses.dataclass
class Context:
    """What every stage of one pipeline needs."""

    cfg: DictConfig
    csdd: CSDD
    views: list[WeakView]
    source: PhotoSource
    runner: StageRunner

    @property
    def by_key(self) -> dict[str, WeakView]:
        return {view.key: view for view in self.views}

    @cached_property
    def truths(self) -> dict[str, dict[str, ViewTruth]]:
        """Truth of the weak views by source (read once, after the forge has rendered them)."""
        return view_truths(self.cfg, self.csdd, self.views)


def photo_source(cfg: DictConfig, csdd: CSDD) -> PhotoSource:
    data = cfg.data
    options = OmegaConf.to_container(data.image_source_options, resolve=True) or {}
    return build_photo_source(data.image_source, csdd.data_dir, folder=data.image_folder, **options)


def excluded_tablets(cfg: DictConfig, csdd: CSDD) -> set[str]:
    """Test tablets (never weak data) and the tablets the data config leaves out."""
    tablets = {s.tablet for s in annotated_segments(csdd, list(cfg.data.test_sets))}
    return tablets | set(cfg.data.exclude_train_tablets or ())


def view_truths(
    cfg: DictConfig, csdd: CSDD, views: list[WeakView]
) -> dict[str, dict[str, ViewTruth]]:
    """Truth for the generated labels, by source: ``real`` boxes of box-set views and the
    ``forge``'s hidden boxes of forged views."""
    by_key = {view.key: view for view in views}
    real = real_truth(csdd, list(cfg.pipeline.weak.box_sets), by_key)
    forged_truth: dict[str, ViewTruth] = {}
    if "forge" in str(cfg.data.image_source):
        options = dict(OmegaConf.to_container(cfg.data.image_source_options, resolve=True) or {})
        options.pop("extensions", None)
        forge = Forge(csdd.data_dir, **options)
        forged = sorted({v.segment.tablet for k, v in by_key.items() if k not in real})
        rendered = [t for t in forged if forge.is_rendered(t)]
        if rendered:
            found = forge_truth(forge.truth(rendered), by_key)
            forged_truth = {k: t for k, t in found.items() if k not in real}
    return {"real": real, "forge": forged_truth}


def make_context(cfg: DictConfig) -> Context:
    csdd = CSDD(resolve_data_dir(cfg.data.data_dir), registration_fixes=cfg.data.registration_fixes)
    weak = cfg.pipeline.weak
    views = select_weak_views(
        csdd,
        list(weak.collections),
        list(weak.box_sets),
        exclude_tablets=excluded_tablets(cfg, csdd),
        limit=weak.limit,
        per_collection=weak.get("per_collection"),
    )
    runner = StageRunner(
        cfg.pipeline.root,
        extra={
            "pipeline": cfg.pipeline.name,
            "command": command_line(),
            "git_commit": git_commit(),
            "hardware": hardware_description(),
        },
    )
    return Context(cfg, csdd, views, photo_source(cfg, csdd), runner)
