"""The JiaGuWen oracle-bone character images and the honest split.

The folder (``<data_dir>/jiaguwen/``) holds ``i/*.jpg`` (50×50 glyphs) and ``index.json``, a
list of ``{"image": file, "name": character}``. :func:`split_index` never scores an image the
model trained on: of every character with ≥ 2 images one image is held out for the test, of
every character with ≥ 3 a second one for validation (model selection, temperature); the rest,
and every character with a single image, train. Training images are augmented the way hand
drawing varies: stroke width, elastic distortion, small affine changes (never flips).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, get_worker_info

from cuneidet.classify.data import class_aware_weights, collate_crops
from cuneidet.data.datasets import to_input_tensor
from cuneidet.data.glyphs import INPUT_SIZE, fit_ink, ink_map, to_gray
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.transforms import seed_pipeline
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError, ImageLoadError

log = logging.getLogger(__name__)

#: side at which glyphs are kept in memory and augmented before the final fit to the input
WORK_SIZE = 128
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GlyphEntry:
    image: str
    name: str


def read_index(folder: Path) -> list[GlyphEntry]:
    """The entries of ``folder/index.json`` whose image exists; a row without its image, a
    malformed row or a missing folder is a clear error naming the file."""
    if not folder.is_dir():
        raise DataNotFoundError(
            f"no JiaGuWen folder at {folder}; point data.data_dir at the folder that holds "
            "jiaguwen/ (i/*.jpg and index.json) or set CUNEIDET_DATA_DIR"
        )
    path = folder / "index.json"
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist; the JiaGuWen folder needs index.json")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataFormatError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(rows, list):
        raise DataFormatError(f"{path} must hold a list of {{image, name}} objects")
    entries = []
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("image") or not row.get("name"):
            raise DataFormatError(f"{path}: entry {number} lacks image or name: {row!r}")
        image = str(row["image"])
        if Path(image).name != image:
            raise DataFormatError(f"{path}: entry {number} names a path, not a file: {image!r}")
        if not (folder / "i" / image).is_file():
            raise DataNotFoundError(
                f"{path}: entry {number} names {image}, which is not in {folder / 'i'}; "
                "restore the image or drop the entry"
            )
        entries.append(GlyphEntry(image, str(row["name"])))
    if not entries:
        raise DataFormatError(f"{path} lists no images")
    return entries


def charset(entries: Sequence[GlyphEntry]) -> list[str]:
    """The characters, in code-point order: class ``i`` is ``charset[i]``."""
    return sorted({e.name for e in entries})


def split_index(entries: Sequence[GlyphEntry], seed: int = 0) -> dict[str, list[int]]:
    """Entry indices of ``train``, ``val`` and ``test`` (see the module doc), deterministic."""
    rng = np.random.default_rng(seed)
    by_name: dict[str, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        by_name[entry.name].append(index)
    split: dict[str, list[int]] = {name: [] for name in SPLITS}
    for name in sorted(by_name):
        members = sorted(by_name[name], key=lambda i: entries[i].image)
        order = [members[i] for i in rng.permutation(len(members))]
        if len(order) >= 2:
            split["test"].append(order.pop(0))
        if len(order) >= 2:
            split["val"].append(order.pop(0))
        split["train"].extend(order)
    return {name: sorted(indices) for name, indices in split.items()}


def load_glyph(path: Path) -> np.ndarray:
    """The ink map (float32 [WORK_SIZE, WORK_SIZE]) of a glyph image file."""
    try:
        with Image.open(path) as handle:
            gray = to_gray(np.asarray(handle.convert("RGB")))
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageLoadError(f"cannot read the glyph image {path}: {error}") from error
    return fit_ink(ink_map(gray), WORK_SIZE)


def drawing_augmentation(
    stroke: float = 0.5, elastic: float = 0.6, affine: float = 0.9
) -> A.Compose:
    """Hand-drawing variation on a WORK_SIZE ink map: thicker or thinner strokes, elastic
    wobble, rotation / scale / shear / shift (no flips: characters are chiral)."""
    return A.Compose(
        [
            A.ElasticTransform(alpha=30.0, sigma=6.0, p=elastic),
            A.Affine(
                rotate=(-12, 12),
                scale=(0.85, 1.15),
                shear=(-10, 10),
                translate_percent=(-0.06, 0.06),
                fill=0,
                p=affine,
            ),
            A.Morphological(scale=(2, 4), operation="dilation", p=stroke / 2),
            A.Morphological(scale=(2, 3), operation="erosion", p=stroke / 2),
        ]
    )


class GlyphDataset(Dataset):
    """Network inputs (uint8 black on white → ``to_input_tensor``) of glyph ink maps."""

    def __init__(
        self,
        inks: Sequence[np.ndarray],
        labels: Sequence[int],
        input_size: int = INPUT_SIZE,
        augment: A.Compose | None = None,
        seed: int = 0,
    ) -> None:
        self.inks = list(inks)
        self.labels = np.asarray(labels, np.int64)
        self.input_size = input_size
        self.augment = augment
        self.seed = seed
        if augment is not None:
            seed_pipeline(augment, seed)

    def __len__(self) -> int:
        return len(self.inks)

    def image(self, index: int) -> np.ndarray:
        ink = self.inks[index]
        if self.augment is not None:
            ink = self.augment(image=ink)["image"]
            try:
                ink = fit_ink(ink, self.input_size)
            except ImageLoadError:  # the augmentation erased the strokes: keep the original
                ink = fit_ink(self.inks[index], self.input_size)
        else:
            ink = fit_ink(ink, self.input_size)
        return np.round(255.0 * (1.0 - np.clip(ink, 0, 1))).astype(np.uint8)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": to_input_tensor(self.image(index)), "label": int(self.labels[index])}


def _seed_worker(worker_id: int) -> None:
    info = get_worker_info()
    dataset = info.dataset if info is not None else None
    if isinstance(dataset, GlyphDataset) and dataset.augment is not None:
        seed_pipeline(dataset.augment, dataset.seed * 1009 + worker_id + 1)


class JiaguwenDataModule(pl.LightningDataModule):
    """JiaGuWen with :func:`split_index`; ``test_dataloader`` gives the held-out test images
    and, second, the training images unaugmented (the train-set figure beside the honest one)."""

    def __init__(
        self,
        data_dir: str | None = None,
        folder: str = "jiaguwen",
        num_classes: int | None = None,
        input_size: int = INPUT_SIZE,
        batch_size: int = 128,
        num_workers: int = 1,
        samples_per_epoch: int = 4096,
        balance: float = 0.5,
        stroke: float = 0.5,
        elastic: float = 0.6,
        affine: float = 0.9,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.entries: list[GlyphEntry] = []
        self.classes: list[str] = []
        self.split: dict[str, list[int]] = {}
        self.inks: list[np.ndarray] = []

    @property
    def root(self) -> Path:
        """``<data_dir>/<folder>``; a configured data folder needs no ``csdd/`` beside it."""
        configured = self.hparams.data_dir
        if configured is not None and str(configured).strip():
            return Path(configured).expanduser().resolve() / self.hparams.folder
        return resolve_data_dir(None) / self.hparams.folder

    def setup(self, stage: str | None = None) -> None:
        if self.entries:
            return
        root = self.root
        self.entries = read_index(root)
        self.classes = charset(self.entries)
        expected = self.hparams.num_classes
        if expected is not None and expected != len(self.classes):
            raise ConfigError(
                f"{root / 'index.json'} has {len(self.classes)} characters but the model has "
                f"{expected} outputs; set model.net.num_classes={len(self.classes)}"
            )
        self.split = split_index(self.entries, self.hparams.seed)
        self.inks = [load_glyph(root / "i" / e.image) for e in self.entries]
        sizes = {name: len(indices) for name, indices in self.split.items()}
        log.info(
            "JiaGuWen: %d images, %d characters, split %s",
            len(self.entries),
            len(self.classes),
            sizes,
        )

    def labels(self, split: str) -> np.ndarray:
        lookup = {name: i for i, name in enumerate(self.classes)}
        return np.array([lookup[self.entries[i].name] for i in self.split[split]], np.int64)

    def dataset(self, split: str, augment: bool = False) -> GlyphDataset:
        hp = self.hparams
        pipeline = drawing_augmentation(hp.stroke, hp.elastic, hp.affine) if augment else None
        inks = [self.inks[i] for i in self.split[split]]
        return GlyphDataset(inks, self.labels(split), hp.input_size, pipeline, hp.seed)

    def _loader(self, dataset: GlyphDataset, sampler: Any = None) -> DataLoader:
        workers = int(self.hparams.num_workers)
        return DataLoader(
            dataset,
            batch_size=int(self.hparams.batch_size),
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate_crops,
            worker_init_fn=_seed_worker,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train", augment=True)
        weights = class_aware_weights(dataset.labels, self.hparams.balance, 0.0)
        generator = torch.Generator().manual_seed(int(self.hparams.seed))
        sampler = WeightedRandomSampler(
            torch.as_tensor(weights), int(self.hparams.samples_per_epoch), generator=generator
        )
        return self._loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"))

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.dataset("test")), self._loader(self.dataset("train"))]

    def class_names(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    def split_summary(self) -> dict[str, Any]:
        single = sum(1 for name in self.classes if self._count(name) == 1)
        return {
            "images": len(self.entries),
            "characters": len(self.classes),
            "single_image_characters": single,
            **{f"{name}_images": len(indices) for name, indices in self.split.items()},
            "test_characters": len(self.split["test"]),
            "unseen_at_test": 0,  # every test character has ≥ 1 training image
        }

    def _count(self, name: str) -> int:
        return sum(1 for e in self.entries if e.name == name)
