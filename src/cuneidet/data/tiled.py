"""What every box datamodule shares: the paper's training tiles and the detection loaders.

:class:`TiledDetectionData` is mixed into a ``LightningDataModule`` whose ``hparams`` hold the
tiling and augmentation settings (``tile_size``, ``input_size``, ``tile_offset``,
``tile_step_x``, ``tile_step_y``, ``small_segments``, ``crop_scale``, ``max_aspect``,
``jitter_p``, ``brightness``, ``contrast``, ``seed``, ``num_classes``, ``batch_size``,
``num_workers``, ``pin_memory``) and that fills ``train_samples`` / ``val_samples`` /
``test_samples`` with :class:`~cuneidet.data.datasets.SegmentSample` objects in ``setup``:
training tiles are augmented windows (never flipped), validation and test whole images.
"""

from __future__ import annotations

import operator
from typing import Any

from torch.utils.data import DataLoader

from cuneidet.data.datasets import (
    SegmentDataset,
    SegmentSample,
    TileDataset,
    collate_detection,
    seed_worker_transform,
)
from cuneidet.data.tiling import tile_segments
from cuneidet.data.transforms import build_train_transform, seed_pipeline
from cuneidet.errors import ConfigError


class TiledDetectionData:
    """Training tiles and the train / val / test loaders of a box datamodule."""

    hparams: Any
    train_samples: list[SegmentSample] | None
    val_samples: list[SegmentSample] | None
    test_samples: list[SegmentSample] | None

    def train_dataset(self, num_classes: int | None = None) -> TileDataset:
        """Training tiles; boxes with a label ≥ ``num_classes`` (default data.num_classes) are
        left out of the targets."""
        hp = self.hparams
        assert self.train_samples is not None, "call setup('fit') first"
        tiles = tile_segments(
            [s.size for s in self.train_samples],
            tile=hp.tile_size,
            offset=hp.tile_offset,
            step_x=hp.tile_step_x,
            step_y=hp.tile_step_y,
            small_segments=hp.small_segments,
        )
        if not tiles:
            raise ConfigError(
                "the training images yield no tiles: every one is smaller than the tiling "
                "allows; set data.small_segments=whole or train on larger images"
            )
        transform = build_train_transform(
            tile_size=hp.tile_size,
            input_size=hp.input_size,
            crop_scale=tuple(hp.crop_scale),
            max_aspect=hp.max_aspect,
            jitter_p=hp.jitter_p,
            brightness=hp.brightness,
            contrast=hp.contrast,
        )
        seed_pipeline(transform, hp.seed)
        return TileDataset(self.train_samples, tiles, transform, num_classes or hp.num_classes)

    def _loader(self, dataset: Any, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=_whole("data.batch_size", batch_size, 1),
            shuffle=shuffle,
            num_workers=_whole("data.num_workers", self.hparams.num_workers, 0),
            collate_fn=collate_detection,
            worker_init_fn=seed_worker_transform,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=False,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset(), self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_samples is not None, "call setup('fit') first"
        return self._loader(SegmentDataset(self.val_samples), 1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        assert self.test_samples is not None, "call setup('test') first"
        return self._loader(SegmentDataset(self.test_samples), 1, shuffle=False)


def _whole(key: str, value: Any, minimum: int) -> int:
    """A count from the config (``data.batch_size``, ...) checked: a whole number ≥ minimum."""
    try:
        number = operator.index(value)  # int or a NumPy integer; not a float or a string
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number < minimum:
        raise ConfigError(f"{key} must be a whole number ≥ {minimum}, got {value!r}")
    return number
