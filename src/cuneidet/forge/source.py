"""The ``forge`` photo source: forged photographs, rendered (and cached) on first use, and the
true sign boxes of the views it renders."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from cuneidet.data.sources import PhotoSource, decode_image
from cuneidet.data.views import AnnotatedSegment
from cuneidet.forge.store import Forge
from cuneidet.forge.supervision import truth_segments


class ForgeSource(PhotoSource):
    """Photo source that serves forged photos, rendering (and caching) them on first use."""

    def __init__(self, forge: Forge) -> None:
        self.forge = forge

    def has(self, tablet: str) -> bool:
        return self.forge.is_rendered(tablet) or self.forge.planner.has(tablet)

    def load(self, tablet: str) -> Image.Image:
        self.forge.render(tablet)
        return decode_image(self.forge.image_path(tablet), fix="delete it to render it again")

    def describe(self) -> str:
        return f"forge[{self.forge.directory}]"

    def truth_segments(
        self,
        collections: Sequence[str],
        exclude_tablets: set[str] | frozenset[str] = frozenset(),
        progress: bool = True,
    ) -> list[AnnotatedSegment]:
        """Assigned views of ``collections`` with the forge's visible signs as boxes (rendered
        first where needed); see :func:`cuneidet.forge.supervision.truth_segments`."""
        return truth_segments(
            self.forge, collections, exclude_tablets=exclude_tablets, progress=progress
        )


__all__ = ["ForgeSource"]
