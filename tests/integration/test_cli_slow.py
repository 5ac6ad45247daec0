"""Slow end-to-end variants (run with `make test-all` or `pytest -m slow`)."""

import json

import pytest

from tests.integration.test_cli import FAST, run_app
from tests.synthetic_csdd import make_synthetic_csdd


@pytest.mark.slow
def test_train_simulated_ddp(tmp_path):
    data = make_synthetic_csdd(tmp_path / "data")
    run_dir = tmp_path / "ddp"
    overrides = [o for o in FAST if not o.startswith("trainer.accelerator")]
    run_app(
        "train",
        "trainer=ddp_sim",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=2",
        "data.val_fraction=0.25",
        *overrides,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_map"] is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "head"), [("resnet18", "retinanet"), ("mobilenet_v3_large", "ssd")]
)
def test_train_modern_variants(tmp_path, backbone, head):
    data = make_synthetic_csdd(tmp_path / "data")
    run_dir = tmp_path / f"{backbone}_{head}"
    run_app(
        "train",
        f"model/backbone={backbone}",
        f"model/head={head}",
        "model/optimizer=adamw",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=2",
        "data.val_fraction=0.25",
        *FAST,
    )
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
