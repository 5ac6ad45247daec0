"""The forge on disk: renders cached per tablet (the photo source is :mod:`cuneidet.forge.source`).

Layout of ``<forge_dir>/<variant>/`` where ``variant`` names the rendering settings
(``v1-<hash of params, seed, layout>``), so renders made with other settings never mix:

- ``images/<tablet>.jpg``: the forged composite photo, in the pixel frame of the segment bboxes;
- ``truth/<tablet>.csv``: hidden ground truth, one row per rendered sign, in the bbox-annotation
  column format (segm_idx, tablet_CDLI, view_desc, collection, mzl_label, train_label, bbox,
  relative_bbox) plus line_idx, pos_idx, status (1 intact, 2 damaged, 0 broken) and layout;
- ``settings.json``: the settings the variant was made with.

Both files are written to a temporary name and renamed, truth first, so an interrupted run never
leaves a half image, and an image on disk always has its truth beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from cuneidet.data.csdd import BOX_COLUMNS, CSDD
from cuneidet.data.location import repo_root
from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.forge.glyphs import GlyphBank, default_font_path
from cuneidet.forge.layout import LAYOUTS, TabletSpec
from cuneidet.forge.plan import ForgePlanner
from cuneidet.forge.render import ForgedPhoto, ForgeParams, RenderedView, render_tablet
from cuneidet.utils.io import atomic_open, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = "v3"  # bump whenever rendering changes, so old renders are not reused
TRUTH_COLUMNS = [*BOX_COLUMNS, "line_idx", "pos_idx", "status", "layout"]
ENV_FORGE_DIR = "CUNEIDET_FORGE_DIR"


def default_forge_dir() -> Path:
    """``$CUNEIDET_FORGE_DIR``, else ``<repository>/forge``, else ``./forge``."""
    import os

    if os.environ.get(ENV_FORGE_DIR):
        return Path(os.environ[ENV_FORGE_DIR]).expanduser()
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "forge"


def make_params(overrides: Mapping[str, Any] | None = None) -> ForgeParams:
    """:class:`ForgeParams` with ``overrides`` (lists become tuples); unknown keys raise."""
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(ForgeParams)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(
            f"Unknown forge parameters {unknown} (forge.params); valid: {', '.join(sorted(names))}"
        )
    return ForgeParams(**{k: _as_tuple(v) for k, v in overrides.items()})


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


def tablet_rng(seed: int, tablet: str) -> np.random.Generator:
    """The generator of one tablet: independent of the other tablets and of worker order."""
    return np.random.default_rng([int(seed), zlib.crc32(tablet.encode("utf-8"))])


def truth_frame(tablet: str, views: Sequence[RenderedView]) -> pd.DataFrame:
    rows = []
    for rendered in views:
        view = rendered.view
        x0, y0 = view.bbox[:2]
        for sign in rendered.signs:
            box = [
                int(np.floor(sign.x1)),
                int(np.floor(sign.y1)),
                int(np.ceil(sign.x2)),
                int(np.ceil(sign.y2)),
            ]
            relative = [box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]
            rows.append(
                (
                    view.segm_idx,
                    tablet,
                    view.view_desc,
                    view.collection,
                    sign.mzl,
                    sign.train_label,
                    str(box),
                    str(relative),
                    sign.line_idx,
                    sign.pos_idx,
                    sign.status,
                    rendered.layout,
                )
            )
    return pd.DataFrame(rows, columns=TRUTH_COLUMNS)


class Forge:
    """Render, cache and read forged tablets (see the module docstring for the files)."""

    def __init__(
        self,
        data_dir: str | Path,
        forge_dir: str | Path | None = None,
        params: Mapping[str, Any] | ForgeParams | None = None,
        seed: int = 0,
        layout: str = "auto",
        font: str | Path | None = None,
        box_sets: Sequence[str] | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"Unknown forge layout {layout!r}; valid: {', '.join(LAYOUTS)}")
        self.data_dir = Path(data_dir)
        self.params = params if isinstance(params, ForgeParams) else make_params(params)
        self.seed = int(seed)
        self.layout = layout
        self.font = Path(font) if font else default_font_path(self.data_dir)
        self.box_sets = None if box_sets is None else list(box_sets)
        self.root = Path(forge_dir).expanduser() if forge_dir else default_forge_dir()
        self._csdd: CSDD | None = None
        self._planner: ForgePlanner | None = None
        self._bank: GlyphBank | None = None
        self._priors: dict[int, tuple[float, float]] | None = None

    # -- settings and paths ---------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "seed": self.seed,
            "layout": self.layout,
            "box_sets": self.box_sets,
            "params": dataclasses.asdict(self.params),
        }

    @property
    def variant(self) -> str:
        text = json.dumps(self.settings(), sort_keys=True)
        return f"{FORMAT_VERSION}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"

    @property
    def directory(self) -> Path:
        return self.root / self.variant

    def image_path(self, tablet: str) -> Path:
        return self.directory / "images" / f"{tablet}.jpg"

    def truth_path(self, tablet: str) -> Path:
        return self.directory / "truth" / f"{tablet}.csv"

    def is_rendered(self, tablet: str) -> bool:
        return self.image_path(tablet).is_file() and self.truth_path(tablet).is_file()

    # -- lazily built helpers -------------------------------------------------------------------
    @property
    def csdd(self) -> CSDD:
        if self._csdd is None:
            self._csdd = CSDD(self.data_dir)
        return self._csdd

    @property
    def planner(self) -> ForgePlanner:
        if self._planner is None:
            self._planner = ForgePlanner(self.csdd, self.box_sets)
        return self._planner

    @property
    def bank(self) -> GlyphBank:
        if self._bank is None:
            self._bank = GlyphBank(self.font, self.csdd.sign_list)
        return self._bank

    @property
    def priors(self) -> dict[int, tuple[float, float]]:
        """Per-class sign width/height priors; the layout's defaults when the file is absent."""
        if self._priors is None:
            try:
                self._priors = self.csdd.sign_width_priors
            except DataNotFoundError as exc:
                log.warning(
                    "forge: no sign width priors (%s); every sign gets the default width", exc
                )
                self._priors = {}
        return self._priors

    # -- rendering ------------------------------------------------------------------------------
    def render_spec(self, spec: TabletSpec) -> ForgedPhoto:
        """Render one tablet in memory. Deterministic: the seed and tablet fix the result."""
        rng = tablet_rng(self.seed, spec.tablet)
        return render_tablet(spec, self.bank, self.priors, self.params, rng, self.layout)

    def save(self, tablet: str, photo: ForgedPhoto) -> Path:
        """Write the truth table, then the JPEG, each atomically."""
        truth = truth_frame(tablet, photo.views)
        with atomic_open(self.truth_path(tablet), "w", encoding="utf-8", newline="") as handle:
            truth.to_csv(handle, index=False)
        buffer = io.BytesIO()
        Image.fromarray(photo.image).save(buffer, format="JPEG", quality=photo.jpeg_quality)
        with atomic_open(self.image_path(tablet), "wb") as handle:
            handle.write(buffer.getvalue())
        return self.image_path(tablet)

    def render(self, tablet: str, overwrite: bool = False, spec: TabletSpec | None = None) -> bool:
        """Render ``tablet`` to disk unless cached; returns whether it rendered."""
        if not overwrite and self.is_rendered(tablet):
            return False
        self.save(tablet, self.render_spec(spec or self.planner.spec(tablet)))
        return True

    def write_settings(self) -> None:
        write_json(self.directory / "settings.json", self.settings())

    def truth(self, tablets: Sequence[str] | None = None) -> pd.DataFrame:
        """Hidden ground truth of rendered tablets (all rendered ones when ``None``)."""
        folder = self.directory / "truth"
        paths = (
            sorted(folder.glob("*.csv"))
            if tablets is None
            else [self.truth_path(t) for t in tablets if self.truth_path(t).is_file()]
        )
        frames = [pd.read_csv(p, keep_default_na=False) for p in paths]
        if not frames:
            return pd.DataFrame(columns=TRUTH_COLUMNS)
        return pd.concat(frames, ignore_index=True)


__all__ = [
    "ENV_FORGE_DIR",
    "FORMAT_VERSION",
    "TRUTH_COLUMNS",
    "Forge",
    "default_forge_dir",
    "make_params",
    "tablet_rng",
    "truth_frame",
]
