"""The line network end to end: cuneidet-train model=line_net, then cuneidet-lines."""

import json

import numpy as np
import pandas as pd
import pytest

from cuneidet.data.line_geometry import LineHypotheses
from tests.integration.test_cli import run_app
from tests.synthetic_csdd import make_synthetic_csdd

LINE_FAST = [
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "data.batch_size=2",
    "data.crop_size=256",
    "data.crops_per_epoch=4",
    "data.progress=false",
    "data.box_sets=[train_full,test_full]",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=1",
]


def train_line_net(data, run_dir, *overrides: str) -> None:
    """A tiny seg line network on the synthetic CSDD (TRAIN002 validates)."""
    run_app(
        "train",
        "model=line_net",
        "model/line_arch=seg",
        "model.net.channels=8",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run_dir}",
        "data.val_tablets=[TRAIN002]",
        *LINE_FAST,
        *overrides,
    )


@pytest.fixture(scope="module")
def trained_lines(tmp_path_factory):
    root = tmp_path_factory.mktemp("lines")
    data = make_synthetic_csdd(
        root / "data", train_tablets=4, test_tablets=2, with_lines=True, unlined_train_tablets=1
    )
    run_dir = root / "train"
    train_line_net(data, run_dir, "trainer.max_epochs=2")
    return data, run_dir


def test_train_line_net_checkpoints_and_tests(trained_lines):
    _, run_dir = trained_lines
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert "train/loss" in metrics.columns and "val/line_F1" in metrics.columns
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "LineModule" and summary["optimized_metric"] == "val/line_F1"
    assert 0 <= summary["test_line_f1"] <= 1
    scores = json.loads((run_dir / "test" / "lines_metrics.json").read_text())
    assert scores["tp"] + scores["fn"] == 8, "2 test views with 4 annotated lines each"


def _predict_test_views(trained_lines, out, *overrides: str) -> None:
    """cuneidet-lines predict with the trained fixture's last checkpoint on the test views."""
    data, run_dir = trained_lines
    run_app(
        "lines",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"data_dir={data}",
        "views.collections=[test]",
        "progress=false",
        *overrides,
        f"hydra.run.dir={out}",
    )


def test_lines_predict_writes_artifacts_and_overlays(trained_lines, tmp_path):
    out = tmp_path / "predict"
    # the tiny model is untrained: with threshold 0 every cell counts as on a line
    _predict_test_views(trained_lines, out, "threshold=0.0")
    views = pd.read_csv(out / "views.csv")
    assert len(views) == 2 and (views["tl_lines"] == 4).all()
    record = json.loads((out / views["json"][0]).read_text())
    maps = np.load((out / views["json"][0]).with_suffix(".npz"))
    hypotheses = LineHypotheses.from_dict(record, maps["label_map"], maps["line_map"])
    assert len(hypotheses) == len(record["tl_lines"]) == views["lines"][0]
    assert maps["probability"].shape == maps["line_map"].shape
    assert maps["on_line_mask"].shape == tuple(record["image_size"])
    assert len(record["bands"]) == len(hypotheses) and all(len(b) == 4 for b in record["bands"])
    assert len(list((out / "overlays").glob("*.png"))) == 2


def test_lines_evaluate_writes_results(trained_lines, tmp_path):
    data, run_dir = trained_lines
    out = tmp_path / "evaluate"
    results = tmp_path / "results" / "lines.json"
    run_app(
        "lines",
        "action=evaluate",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"data_dir={data}",
        "evaluate.forge_views=0",
        "evaluate.overlays=1",
        "evaluate.set_aside_tablets=[TEST000]",
        "evaluate.real_splits=[test,val,boxes]",
        "evaluate.validation.val_tablets=[TRAIN002]",  # the training run's validation tablet
        "progress=false",
        f"results_json={results}",
        "results_key=seg",
        f"hydra.run.dir={out}",
    )
    figures = json.loads(results.read_text())["seg"]
    assert figures["real_test"]["views"] == 2
    assert figures["real_val"]["views"] == 1
    assert pd.read_csv(out / "real_val" / "per_view.csv")["view"].str.startswith("TRAIN002").all()
    # TRAIN003 has boxes but no annotated lines: its 4 rows of signs are its lines
    assert figures["real_boxes"]["views"] == 1
    assert figures["real_boxes"]["truth"] == "rows of annotated signs"
    boxes_view = pd.read_csv(out / "real_boxes" / "per_view.csv")
    assert boxes_view["view"].tolist() == ["TRAIN003 Obv"] and boxes_view["truth_lines"][0] == 4
    ceiling = figures["real_test"]["truth_lines_assignment"]
    assert ceiling["total"] == 8 and 0 <= ceiling["accuracy"] <= 1
    assert {"precision", "recall", "f1", "assignment_accuracy"} <= set(figures["real_test"])
    assert (out / "real_test" / "per_view.csv").is_file()
    assert len(list((out / "real_test").glob("*.png"))) == 1
    per_view = pd.read_csv(out / "real_test" / "per_view.csv")
    others = per_view[per_view["view"] != "TEST000 Obv"]
    without = figures["real_test"]["without_set_aside"]
    assert without["set_aside"] == ["TEST000 Obv"] and len(others) == 1
    for key in ("tp", "fp", "fn"):
        assert without[key] == others[key].sum()
    assert without["assignment_total"] == others["assigned_total"].sum()


def test_lines_rejects_a_detector_checkpoint_and_bad_actions(trained_lines, tmp_path):
    data, run_dir = trained_lines
    bad = run_app(
        "lines",
        "action=draw",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"data_dir={data}",
        f"hydra.run.dir={tmp_path / 'bad'}",
        check=False,
    )
    assert bad.returncode != 0 and "Unknown action" in bad.stderr + bad.stdout
    missing = run_app(
        "lines",
        f"ckpt_path={tmp_path / 'none.ckpt'}",
        f"data_dir={data}",
        "views.splits=[test]",
        f"hydra.run.dir={tmp_path / 'missing'}",
        check=False,
    )
    assert missing.returncode != 0 and "does not exist" in missing.stderr + missing.stdout


def test_detector_model_cannot_train_on_line_data(tmp_path):
    data = make_synthetic_csdd(tmp_path / "data", with_lines=True)
    result = run_app(
        "train",
        "data=csdd_lines",
        f"paths.data_dir={data}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *LINE_FAST,
        check=False,
    )
    assert result.returncode != 0 and "needs data=csdd_lines" in result.stderr + result.stdout


def _run_script(name: str, *args: str, monkeypatch) -> None:
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / name
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    runpy.run_path(str(script), run_name="__main__")


def test_select_line_postprocess_ranks_settings_on_validation_views(
    trained_lines, tmp_path, monkeypatch, capsys
):
    data, run_dir = trained_lines
    out = tmp_path / "selection.csv"
    ckpt = str(run_dir / "checkpoints" / "best.ckpt")
    common = ["--ckpt", ckpt, "--data-dir", str(data), "--out", str(out)]
    grid = ["--thresholds", "0.0", "0.5", "--extra-lines", "1", "--variances", "1"]
    _run_script("select_line_postprocess.py", *common, *grid, monkeypatch=monkeypatch)
    table = pd.read_csv(out)
    assert len(table) == 2 and set(table["threshold"]) == {0.0, 0.5}
    assert table["criterion"].is_monotonic_decreasing
    assert "views of ['val', 'boxes']" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _run_script(
            "select_line_postprocess.py", *common, "--splits", "test", monkeypatch=monkeypatch
        )


def test_check_box_lines_matches_rows_of_signs_to_annotated_lines(
    trained_lines, tmp_path, monkeypatch, capsys
):
    data, _ = trained_lines
    out = tmp_path / "check.csv"
    _run_script(
        "check_box_lines.py", "--data-dir", str(data), "--out", str(out), monkeypatch=monkeypatch
    )
    printed = capsys.readouterr().out
    assert "train: 3 views" in printed and "F1 1.000" in printed
    table = pd.read_csv(out)
    assert (table["matched"] == table["annotated_lines"]).all()


def test_lines_predict_counts_transliterated_views_without_lines(trained_lines, tmp_path):
    out = tmp_path / "blank"
    # no cell reaches p = 1: no line anywhere
    _predict_test_views(trained_lines, out, "overlays=false", "threshold=1.0")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["views"] == 2
    assert summary["transliterated_views_without_lines"] == ["test/0", "test/1"]
    assert (pd.read_csv(out / "views.csv")["lines"] == 0).all()
