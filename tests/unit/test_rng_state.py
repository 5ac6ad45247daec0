"""ResumableRandomState: a run resumed from last.ckpt draws what the uninterrupted run drew."""

import io
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from cuneidet.utils.rng_state import (
    ResumableRandomState,
    generator_states,
    generators,
    global_state,
    set_generator_states,
    set_global_state,
)


class Jitter:
    """An augmentation with its own generators, as albumentations transforms have."""

    def __init__(self, seed: int) -> None:
        self.random_generator = np.random.default_rng(seed)
        self.py_random = random.Random(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        scale = self.py_random.uniform(0.5, 1.5)
        return x * scale + self.random_generator.normal(0, 0.1, x.shape)


class Compose:
    def __init__(self, transforms) -> None:
        self.transforms = transforms

    def __call__(self, x):
        for transform in self.transforms:
            x = transform(x)
        return x


class Points(Dataset):
    def __init__(self, transform) -> None:
        self.x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(12, 2)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        x = self.transform(self.x[index]).astype(np.float32)
        return torch.from_numpy(x), torch.tensor([float(self.x[index].sum())])


class Data(pl.LightningDataModule):
    def __init__(self, num_workers: int = 0) -> None:
        super().__init__()
        self.num_workers = num_workers

    def train_dataloader(self):  # a new, freshly seeded augmentation, as cuneidet's datamodules
        return DataLoader(
            Points(Compose([Jitter(7), Jitter(8)])),
            batch_size=3,
            shuffle=True,
            num_workers=self.num_workers,
            worker_init_fn=_reseed_worker,
        )


def _reseed_worker(worker_id: int) -> None:
    """As cuneidet.data.datasets.seed_worker_transform: the worker's augmentation from its seed."""
    info = torch.utils.data.get_worker_info()
    for index, transform in enumerate(info.dataset.transform.transforms):
        transform.__init__(info.seed % 2**31 + index)


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        noise = float(np.random.rand() + random.random()) * 1e-3  # global NumPy/Python draws
        return torch.nn.functional.mse_loss(self.net(x), y) + noise

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.5)


def _fit(folder, epochs, enabled=True, resume=False, num_workers=0):
    """One process's run: seeded as cuneidet-train seeds it, optionally from last.ckpt."""
    pl.seed_everything(0, workers=True, verbose=False)
    net = Net()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(
                dirpath=folder, filename="last", save_on_train_epoch_end=True, save_top_k=1
            ),
            ResumableRandomState(enabled=enabled),
        ],
    )
    ckpt = str(folder / "last.ckpt") if resume else None
    trainer.fit(net, datamodule=Data(num_workers), ckpt_path=ckpt)
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("workers", [0, 1])
def test_a_resumed_run_ends_with_the_weights_of_the_uninterrupted_one(tmp_path, workers):
    uninterrupted = _fit(tmp_path / "a", epochs=4, num_workers=workers)
    _fit(tmp_path / "b", epochs=2, num_workers=workers)  # "killed" after epoch 2: its last.ckpt
    resumed = _fit(tmp_path / "b", epochs=4, resume=True, num_workers=workers)
    assert torch.equal(resumed, uninterrupted)

    _fit(tmp_path / "c", epochs=2, enabled=False, num_workers=workers)
    without = _fit(tmp_path / "c", epochs=4, enabled=False, resume=True, num_workers=workers)
    assert not torch.allclose(without, uninterrupted), "the check must see a difference"


def test_global_and_generator_states_round_trip():
    state = global_state()
    drawn = (random.random(), np.random.rand(), torch.rand(2))
    set_global_state(state)
    assert (random.random(), np.random.rand()) == drawn[:2] and torch.equal(torch.rand(2), drawn[2])

    dataset = Points(Compose([Jitter(1), Jitter(2)]))
    assert sorted(generators(dataset)) == [
        "transform.transforms.0.py_random",
        "transform.transforms.0.random_generator",
        "transform.transforms.1.py_random",
        "transform.transforms.1.random_generator",
    ]
    saved = generator_states(dataset)
    first = [dataset[i][0] for i in range(3)]
    other = Points(Compose([Jitter(5), Jitter(6)]))
    assert set_generator_states(other, saved) == 4
    assert all(torch.equal(a, other[i][0]) for i, a in enumerate(first))
    # the states load with torch.load(weights_only=True), as cuneidet's checkpoints do
    buffer = io.BytesIO()
    torch.save({"global": state, "data": saved}, buffer)
    buffer.seek(0)
    assert set(torch.load(buffer, weights_only=True)) == {"global", "data"}
