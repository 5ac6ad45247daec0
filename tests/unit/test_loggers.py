"""W&B: offline without a key, disabled in tests, and an offline run directory is written."""

from pathlib import Path

from PIL import Image

from cuneidet.utils.loggers import (
    finish_wandb,
    log_report_to_wandb,
    resolve_wandb_mode,
    wandb_logger,
)


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"


def test_tests_run_with_wandb_disabled():
    import os

    assert os.environ.get("WANDB_MODE") == "disabled"


def test_offline_run_directory_is_written(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = wandb_logger(project="cuneidet-test", name="offline", save_dir=str(tmp_path))
    logger.log_metrics({"val/mAP": 12.5}, step=1)
    report = tmp_path / "report"
    (report / "segments").mkdir(parents=True)
    (report / "per_class_ap.csv").write_text("train_label,name,ap\n1,AŠ,50.0\n")
    Image.new("RGB", (32, 24), "white").save(report / "segments" / "T_Obv.png")
    log_report_to_wandb([logger], report)
    finish_wandb()
    runs = list(Path(tmp_path).rglob("offline-run-*"))
    assert runs, f"no offline run under {tmp_path}"
    assert any(run.glob("*.wandb") for run in runs)
