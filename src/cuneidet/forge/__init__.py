"""The forge: synthetic tablet photographs rendered from the real CSDD metadata.

It registers the photo-source kinds ``forge`` (every tablet forged) and ``folder+forge`` (the real
photograph where the folder has one, the forge elsewhere) through the ``cuneidet.photo_sources``
entry point, so that :mod:`cuneidet.data` builds them without importing the forge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cuneidet.data.sources import (
    DEFAULT_EXTENSIONS,
    ChainSource,
    FolderSource,
    PhotoSource,
    is_registered,
    register_photo_source,
    under_data_dir,
)
from cuneidet.forge.source import ForgeSource
from cuneidet.forge.store import Forge


def _forge_factory(
    data_dir: Path,
    folder: str | None = None,
    cache_dir: str | None = None,
    url_template: str | None = None,
    forge_dir: str | None = None,
    seed: int = 0,
    layout: str = "auto",
    params: Mapping[str, Any] | None = None,
    font: str | None = None,
) -> PhotoSource:
    return ForgeSource(
        Forge(data_dir, forge_dir=forge_dir, params=params, seed=seed, layout=layout, font=font)
    )


def _folder_forge_factory(
    data_dir: Path,
    folder: str | None = None,
    cache_dir: str | None = None,
    url_template: str | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    forge_dir: str | None = None,
    seed: int = 0,
    layout: str = "auto",
    params: Mapping[str, Any] | None = None,
    font: str | None = None,
) -> PhotoSource:
    folder_path = under_data_dir(data_dir, folder, "csdd/images")
    forge = _forge_factory(
        data_dir, forge_dir=forge_dir, seed=seed, layout=layout, params=params, font=font
    )
    if not folder_path.is_dir():
        return forge
    return ChainSource([FolderSource(folder_path, extensions=extensions), forge], fall_through=True)


def register() -> None:
    """Register ``forge`` and ``folder+forge`` (the ``cuneidet.photo_sources`` entry point); a
    kind registered earlier (e.g. a user's own "forge") is kept."""
    for name, factory in (("forge", _forge_factory), ("folder+forge", _folder_forge_factory)):
        if not is_registered(name):
            register_photo_source(name, factory)


register()

__all__ = ["Forge", "ForgeSource", "register"]
