"""Sign crops of the CSDD's box sets for the sign classifier (its pretraining, as in the paper).

:class:`CropDataModule` loads, splits and scales segments exactly as the detector's
:class:`~cuneidet.data.datamodule.CSDDDataModule` does (same validation tablets, same
``sign_height``), then cuts crops from them in memory: every labelled box, and background windows
between the signs (class 0). Training draws crops class-aware (weight ∝ count^−``balance``) with
geometric jitter (scale, shift, rotation, aspect; never flips) and photometric jitter.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, get_worker_info

from cuneidet.data.crops import CropItem, background_items, crop_windows, sign_items, warp_crop
from cuneidet.data.datamodule import CSDDDataModule
from cuneidet.data.datasets import SegmentSample, to_input_tensor
from cuneidet.data.transforms import seed_pipeline
from cuneidet.errors import ConfigError
from cuneidet.forge.store import Forge

log = logging.getLogger(__name__)


class CropDataset(Dataset):
    """Crops of ``samples``; with ``augment`` each read draws new jitter."""

    def __init__(
        self,
        samples: Sequence[SegmentSample],
        items: Sequence[CropItem],
        crop_size: int = 64,
        context: float = 1.3,
        augment: bool = False,
        scale_jitter: float = 0.15,
        shift_jitter: float = 0.08,
        rotate_deg: float = 6.0,
        stretch_jitter: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.images = [s.image for s in samples]
        self.items = list(items)
        self.crop_size = crop_size
        self.context = context
        self.augment = augment
        self.scale_jitter = scale_jitter
        self.shift_jitter = shift_jitter
        self.rotate_deg = rotate_deg
        self.stretch_jitter = stretch_jitter
        self.rng = np.random.default_rng(seed)
        self.transform = (
            A.Compose(
                [
                    A.RandomBrightnessContrast(0.3, 0.3, p=0.8),
                    A.RandomGamma((70, 150), p=0.5),
                    A.OneOf([A.GaussianBlur((3, 3)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.3),
                ]
            )
            if augment
            else None
        )
        if self.transform is not None:
            seed_pipeline(self.transform, seed)

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return np.array([item.label for item in self.items], np.int64)

    def crop(self, index: int) -> np.ndarray:
        """The uint8 crop of item ``index`` as the classifier sees it without augmentation."""
        item = self.items[index]
        cx, cy, side = crop_windows(np.asarray(item.box), self.context)[0]
        return warp_crop(self.images[item.segment], cx, cy, side, self.crop_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        cx, cy, side = crop_windows(np.asarray(item.box), self.context)[0]
        angle, stretch = 0.0, 1.0
        if self.augment:
            r = self.rng
            side *= float(np.exp(r.uniform(-self.scale_jitter, self.scale_jitter)))
            cx += r.uniform(-self.shift_jitter, self.shift_jitter) * side
            cy += r.uniform(-self.shift_jitter, self.shift_jitter) * side
            angle = r.uniform(-self.rotate_deg, self.rotate_deg)
            stretch = float(np.exp(r.uniform(-self.stretch_jitter, self.stretch_jitter)))
        crop = warp_crop(self.images[item.segment], cx, cy, side, self.crop_size, angle, stretch)
        if self.transform is not None:
            crop = self.transform(image=crop[..., None])["image"]
        return {"image": to_input_tensor(crop), "label": item.label}


def _seed_crop_worker(worker_id: int) -> None:
    cv2.setNumThreads(0)  # one loader worker per core: no OpenCV thread pool on top
    info = get_worker_info()
    if info is None:
        return
    dataset = info.dataset
    dataset.rng = np.random.default_rng(info.seed % 2**32)
    if dataset.transform is not None:
        seed_pipeline(dataset.transform, info.seed % 2**32)


def collate_crops(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "images": torch.stack([i["image"] for i in items]),
        "labels": torch.tensor([i["label"] for i in items], dtype=torch.int64),
    }


def class_aware_weights(labels: np.ndarray, balance: float, background_share: float) -> np.ndarray:
    """Sampling weights: sign crops ∝ count(class)^−balance, background crops ``background_share``
    of the total mass (0 ≤ balance ≤ 1; 0 = as they come, 1 = every class equally often)."""
    counts = Counter(labels.tolist())
    weights = np.array([counts[c] ** -balance for c in labels.tolist()], np.float64)
    is_bg = labels == 0
    if is_bg.any() and (~is_bg).any():
        sign_mass = weights[~is_bg].sum()
        weights[is_bg] = sign_mass * background_share / (1 - background_share) / is_bg.sum()
    return weights / weights.sum()


class CropDataModule(CSDDDataModule):
    """Crops of ``train_sets`` (training and validation tablets) and ``test_sets``."""

    def __init__(
        self,
        *args: Any,
        crop_size: int = 64,
        context: float = 1.3,
        background_fraction: float = 0.15,
        balance: float = 0.5,
        scale_jitter: float = 0.15,
        shift_jitter: float = 0.08,
        rotate_deg: float = 6.0,
        stretch_jitter: float = 0.1,
        crop_batch_size: int | None = None,
        forge_crop_collections: Sequence[str] = (),
        forge_crops_per_class: int = 30,
        forge_crop_share: float = 0.3,
        forge_crop_match_histograms: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= forge_crop_share < 1.0:
            raise ConfigError(
                f"data.forge_crop_share must be in [0, 1), got {forge_crop_share} (the share of "
                "training draws that are forge crops)"
            )
        if forge_crop_collections and forge_crops_per_class < 1:
            raise ConfigError(
                f"data.forge_crops_per_class={forge_crops_per_class}: forge crops need at least "
                "one a class; or set data.forge_crop_collections=[]"
            )
        self.forge_patches: list[SegmentSample] = []
        if not 0.0 <= background_fraction < 1.0:
            raise ConfigError(
                f"data.background_fraction must be in [0, 1), got {background_fraction}"
            )
        if not 0.0 <= balance <= 1.0:
            raise ConfigError(f"data.balance must be in [0, 1], got {balance}")
        if crop_size < 16 or context < 1.0:
            raise ConfigError(
                f"data.crop_size={crop_size} / data.context={context}: crops need >= 16 px and a "
                "context >= 1 (the window is the box's longer side × context)"
            )

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        hp = self.hparams
        if stage in (None, "fit") and hp.forge_crop_collections and not self.forge_patches:
            self.forge_patches = self._forge_patches()

    def forge(self) -> Forge:
        """The :class:`~cuneidet.forge.store.Forge` of this data's settings."""
        return Forge(self.csdd.data_dir, **self.forge_options())

    def _forge_patches(self) -> list[SegmentSample]:
        """Forge crops of ``forge_crop_collections`` (validation and test tablets left out)."""
        from cuneidet.classify.forge_crops import forge_crop_bank, match_real_histograms

        hp = self.hparams
        held_out = self._test_tablets() | {s.tablet for s in self.val_segments}
        patches = forge_crop_bank(
            self.forge(),
            list(hp.forge_crop_collections),
            per_class=int(hp.forge_crops_per_class),
            num_classes=int(hp.num_classes),
            context=float(hp.context),
            scale_factor=self.scale_factor,
            exclude_tablets=held_out,
            seed=int(hp.seed),
            progress=hp.progress,
        )
        if hp.forge_crop_match_histograms:
            assert self.train_samples is not None
            real = self._dataset(self.train_samples, augment=False, seed=hp.seed)
            signs = [i for i, item in enumerate(real.items) if item.label > 0]
            rng = np.random.default_rng(hp.seed)
            picks = rng.choice(signs, size=min(len(signs), 512), replace=False) if signs else []
            match_real_histograms(patches, [real.crop(int(i)) for i in picks], seed=hp.seed)
        return patches

    def _items(self, samples: Sequence[SegmentSample], seed: int) -> list[CropItem]:
        hp = self.hparams
        signs, skipped = sign_items(
            [s.boxes for s in samples], [s.labels for s in samples], hp.num_classes
        )
        if skipped:
            log.info(
                "crops: %d boxes without a class in 1..%d skipped", skipped, hp.num_classes - 1
            )
        share = hp.background_fraction
        count = round(len(signs) * share / (1 - share)) if share > 0 else 0
        rng = np.random.default_rng(seed)
        background = background_items(
            [s.boxes for s in samples], [s.size for s in samples], count, rng
        )
        return signs + background

    def _dataset(
        self,
        samples: Sequence[SegmentSample] | None,
        augment: bool,
        seed: int,
        forge_patches: Sequence[SegmentSample] = (),
    ) -> CropDataset:
        """Crops of ``samples`` (signs and background), then those of ``forge_patches``."""
        hp = self.hparams
        assert samples is not None, "call setup() first"
        items = self._items(samples, seed)
        if not items:
            raise ConfigError("no sign crops: the selected segments have no labelled box")
        forged, _ = sign_items(
            [p.boxes for p in forge_patches], [p.labels for p in forge_patches], hp.num_classes
        )
        offset = len(samples)
        items += [CropItem(item.segment + offset, item.box, item.label) for item in forged]
        return CropDataset(
            [*samples, *forge_patches],
            items,
            crop_size=hp.crop_size,
            context=hp.context,
            augment=augment,
            scale_jitter=hp.scale_jitter,
            shift_jitter=hp.shift_jitter,
            rotate_deg=hp.rotate_deg,
            stretch_jitter=hp.stretch_jitter,
            seed=seed,
        )

    def _crop_loader(self, dataset: CropDataset, sampler: Any = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=int(self.hparams.crop_batch_size or self.hparams.batch_size),
            sampler=sampler,
            shuffle=False,
            num_workers=int(self.hparams.num_workers),
            collate_fn=collate_crops,
            worker_init_fn=_seed_crop_worker,
            persistent_workers=int(self.hparams.num_workers) > 0,
        )

    def train_dataloader(self) -> Any:
        return self.crop_train_loader()

    def crop_train_loader(self) -> DataLoader:
        """Augmented crops drawn class-aware (``balance``), background ``background_fraction``."""
        hp = self.hparams
        assert self.train_samples is not None, "call setup() first"
        dataset = self._dataset(self.train_samples, True, hp.seed, self.forge_patches)
        labels = dataset.labels()
        real = sum(item.segment < len(self.train_samples) for item in dataset.items)
        missing = sorted(set(range(1, hp.num_classes)) - set(labels.tolist()))
        log.info(
            "classifier training: %d sign crops of %d classes, %d background, %d forge crops "
            "of %d classes",
            int((labels[:real] > 0).sum()),
            len(set(labels[:real].tolist()) - {0}),
            int((labels[:real] == 0).sum()),
            len(labels) - real,
            len(set(labels[real:].tolist())),
        )
        if missing:
            log.warning(
                "%d of the %d sign classes have no training crop and cannot be predicted "
                "well (e.g. %s); add box sets or forge crops (data.forge_crop_collections)",
                len(missing),
                hp.num_classes - 1,
                missing[:8],
            )
        weights = class_aware_weights(labels[:real], hp.balance, hp.background_fraction)
        if len(labels) > real:
            share = float(hp.forge_crop_share)
            forge_weights = class_aware_weights(labels[real:], hp.balance, 0.0)
            weights = np.concatenate([weights * (1.0 - share), forge_weights * share])
        generator = torch.Generator().manual_seed(int(hp.seed))
        sampler = WeightedRandomSampler(
            torch.as_tensor(weights), len(dataset), replacement=True, generator=generator
        )
        return self._crop_loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._crop_loader(self._dataset(self.val_samples, augment=False, seed=1))

    def test_dataloader(self) -> DataLoader:
        return self._crop_loader(self._dataset(self.test_samples, augment=False, seed=2))


class TwoStageDataModule(CropDataModule):
    """Training batches ``{"tiles": …, "crops": …}`` for the joint two-stage recogniser: the
    detector's tiles (every box, whatever its label: the localiser finds all signs) and the
    classifier's crops (``crop_batch_size`` a batch); whole segments for validation and test."""

    def train_dataloader(self) -> Any:
        tiles = self._loader(
            self.train_dataset(num_classes=2**31 - 1), self.hparams.batch_size, True
        )
        return {"tiles": tiles, "crops": self.crop_train_loader()}

    def val_dataloader(self) -> DataLoader:
        return CSDDDataModule.val_dataloader(self)

    def test_dataloader(self) -> DataLoader:
        return CSDDDataModule.test_dataloader(self)
