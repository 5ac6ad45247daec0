"""End to end on a synthetic CSDD: cuneidet-train → cuneidet-eval → cuneidet-predict → data."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from PIL import Image

from tests.synthetic_csdd import make_synthetic_csdd

FAST = [
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "data.batch_size=4",
    "data.progress=false",
    "model.inference.pre_nms_topk=3000",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=1",
]


def run_app(module: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    env.pop("CUNEIDET_DATA_DIR", None)
    result = subprocess.run(
        [sys.executable, "-m", f"cuneidet.cli.{module}", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{module} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_synthetic_csdd(root / "data")
    run_dir = root / "train"
    run_app(
        "train",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=3",
        "data.val_fraction=0.25",
        *FAST,
    )
    return data, run_dir


def test_train_writes_checkpoints_metrics_and_report(trained):
    _, run_dir = trained
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2, "last.ckpt must hold the final epoch, not only the best one"
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert "train/loss" in metrics.columns and "val/mAP" in metrics.columns
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "command",
        "git_commit",
        "train_sets",
        "test_sets",
        "test_map",
        "test_global_ap",
        "epochs",
        "train_time_s",
        "hardware",
    ):
        assert key in summary
    assert summary["train_sets"] == ["train_full"] and summary["test_sets"] == ["test_full"]
    test_dir = run_dir / "test"
    report = json.loads((test_dir / "metrics.json").read_text())
    assert report["map"] == summary["test_map"]
    assert (test_dir / "per_class_ap.csv").is_file()
    assert Image.open(test_dir / "pr_curve.png").size[0] > 100
    assert list((test_dir / "segments").glob("*.png"))
    assert not list(run_dir.rglob("*.tmp"))


def test_resume_from_last_checkpoint(trained, tmp_path):
    data, run_dir = trained
    run_app(
        "train",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run_dir}",
        "ckpt_path=last",
        "trainer.max_epochs=4",
        "test=false",
        "data.val_fraction=0.25",
        *FAST,
    )
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert metrics["epoch"].max() == 3


def test_eval_checkpoint(trained, tmp_path):
    data, run_dir = trained
    out = tmp_path / "eval"
    run_app(
        "evaluate",
        f"paths.data_dir={data}",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"hydra.run.dir={out}",
        "trainer.accelerator=cpu",
        "data.num_workers=0",
        "data.progress=false",
        "inference.pre_nms_topk=3000",
    )
    report = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= report["map"] <= 100.0
    assert report["extra"]["checkpoint"].endswith("best.ckpt")
    assert (out / "per_class_ap.csv").is_file()


def test_predict_photos_and_skip_corrupt(trained, tmp_path):
    data, run_dir = trained
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(data / "csdd" / "images" / "TEST000.jpg").save(photos / "tablet.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "predict"
    run_app(
        "predict",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"inputs=[{photos}]",
        "scale=1.0",
        f"paths.data_dir={data}",
        f"hydra.run.dir={out}",
        "inference.score_thresh=0.05",
        "inference.pre_nms_topk=3000",
    )
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["photos"] == 2 and summary["failed"] == ["broken"]
    coco = json.loads((out / "detections_coco.json").read_text())
    assert len(coco["annotations"]) == summary["detections"]
    header = (out / "detections.csv").read_text().splitlines()[0]
    assert header.startswith("imageName, folder, image_path, mzl_label, train_label, x1")


def test_train_bad_input_gives_clear_message(tmp_path):
    data = make_synthetic_csdd(tmp_path / "data")
    result = run_app(
        "train",
        f"paths.data_dir={data}",
        "data.train_sets=[train_nope]",
        f"hydra.run.dir={tmp_path / 'run'}",
        *FAST,
        check=False,
    )
    assert result.returncode == 2
    assert "train_nope" in result.stderr + result.stdout
    missing = run_app(
        "train",
        f"paths.data_dir={tmp_path / 'nowhere'}",
        f"hydra.run.dir={tmp_path / 'r2'}",
        *FAST,
        check=False,
    )
    assert missing.returncode == 2
    assert "nowhere" in missing.stderr + missing.stdout


def test_data_check_on_synthetic(tmp_path):
    data = make_synthetic_csdd(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "cuneidet.cli.data", "--data-dir", str(data), "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "train_full" in result.stdout and "test_full" in result.stdout
