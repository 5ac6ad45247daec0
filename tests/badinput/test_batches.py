"""Bad items in batch jobs: skipped and counted, the rest still processed.

A photo that cannot be read is skipped with a warning that names it; the run's summary counts
it, the other photos or views are processed as usual and nothing is written for the skipped
one. Photos that are unusual but valid (CMYK, 16-bit) are processed exactly like their plain
8-bit twin. The table of the cases is docs/bad_inputs.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.badinput.conftest import Corpus
from tests.badinput.support import (
    INPUTS,
    TINY_DETECTOR,
    assert_clean,
    photo,
    png_header_only,
    run_hydra_app,
)


def _zero_byte(path: Path) -> Path:
    path = path.with_suffix(".jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _truncated_jpeg(path: Path) -> Path:
    full = photo(path.with_suffix(".jpg"), quality=90)
    full.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return full


def _text_named_jpg(path: Path) -> Path:
    path = path.with_suffix(".jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("scan notes, not a photograph\n" * 20)
    return path


def _huge_dimensions(path: Path) -> Path:
    path = path.with_suffix(".png")  # a header claiming 40000×40000 pixels: 1.6 gigapixels
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_header_only(40_000, 40_000))
    return path


SKIPPED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "predict-photo-zero-byte": (_zero_byte, "cannot identify image file"),
    "predict-photo-truncated-jpeg": (_truncated_jpeg, "image file is truncated"),
    "predict-photo-text-named-jpg": (_text_named_jpg, "cannot identify image file"),
    "predict-photo-huge-dimensions": (_huge_dimensions, "decompression bomb"),
}


TWINS: dict[str, Callable[[Path], Path]] = {
    # a print-workflow CMYK TIFF and a 16-bit scan of the same pixels as good.png
    "predict-photo-cmyk": lambda path: photo(path.with_suffix(".tif"), mode="CMYK"),
    "predict-photo-16-bit": lambda path: photo(path.with_suffix(".png"), mode="I;16"),
}


@pytest.fixture(scope="module")
def predicted(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One cuneidet-predict run over a folder of ``good.png``, one photo of every bad kind
    (named after its case) and the CMYK / 16-bit twins of ``good.png``."""
    root = tmp_path_factory.mktemp("predict_folder")
    folder = root / INPUTS / "photos"
    photo(folder / "good.png", mode="L")
    paths = {name: make(folder / name) for name, (make, _) in SKIPPED.items()}
    paths |= {name: make(folder / name) for name, make in TWINS.items()}
    run_dir = root / "run"
    outcome = run_hydra_app(
        "predict",
        [
            f"ckpt_path={corpus.detector}",
            f"inputs=[{folder}]",
            "scale=1.0",
            f"paths.data_dir={corpus.data}",
        ],
        run_dir,
    )
    assert outcome.code == 0, outcome.text[-3000:]
    assert "Traceback" not in outcome.text
    summary = json.loads((run_dir / "predict_summary.json").read_text())
    detections = pd.read_csv(run_dir / "detections.csv", skipinitialspace=True)
    return {"root": root, "paths": paths, "summary": summary, "log": outcome.log, "det": detections}


def test_predict_counts_the_skipped_photos_and_processes_the_others(predicted):
    summary = predicted["summary"]
    assert summary["photos"] == 1 + len(SKIPPED) + len(TWINS)
    assert sorted(summary["failed"]) == sorted(SKIPPED)
    assert f"{len(SKIPPED)} of {summary['photos']} photos/segments skipped" in predicted["log"]
    processed = {"good", *TWINS}
    assert set(predicted["det"]["imageName"]) == processed
    assert len(predicted["det"]) == summary["detections"]
    assert {row["name"] for row in summary["scales"]} == processed
    assert_clean(predicted["root"])


@pytest.mark.parametrize("name", SKIPPED)
def test_predict_skips_an_unreadable_photo_with_its_reason(predicted, name):
    path, reason = predicted["paths"][name], SKIPPED[name][1]
    assert name in predicted["summary"]["failed"]
    line = next(x for x in predicted["log"].splitlines() if f"skipping {name}:" in x)
    assert f"cannot load photo {path}" in line and reason in line
    assert "give a complete JPEG, PNG or TIFF photograph" in line
    assert name not in set(predicted["det"]["imageName"])


@pytest.mark.parametrize("name", TWINS)
def test_predict_reads_a_photo_like_its_8_bit_twin(predicted, name):
    detections = predicted["det"]
    columns = ["train_label", "x1", "y1", "x2", "y2", "det_score"]
    good = detections[detections["imageName"] == "good"][columns].reset_index(drop=True)
    twin = detections[detections["imageName"] == name][columns].reset_index(drop=True)
    assert len(good) > 0
    pd.testing.assert_frame_equal(good, twin)  # not a white (clipped) or inverted image


def _unreadable_train001(data: Path) -> Path:
    photo_path = data / "csdd" / "images" / "TRAIN001.jpg"
    photo_path.write_bytes(b"")
    return photo_path


def test_lines_skips_and_counts_a_view_whose_photo_fails(corpus, data_copy, tmp_path):
    bad = _unreadable_train001(data_copy)
    run_dir = tmp_path / "run"
    outcome = run_hydra_app(
        "lines",
        [
            f"ckpt_path={corpus.line_net}",
            f"paths.data_dir={data_copy}",
            "views.collections=[train]",
            "overlays=false",
            "progress=false",
        ],
        run_dir,
    )
    assert outcome.code == 0 and "Traceback" not in outcome.text, outcome.text[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["views"] == 2 and summary["failed"] == ["train/1"]
    assert "skipped 1 of 3 views whose photo failed" in outcome.log
    assert f"{bad} is not an image Pillow can read" in outcome.log and "Replace" in outcome.log
    views = pd.read_csv(run_dir / "views.csv")
    assert list(views["key"]) == ["train/0", "train/2"]
    assert not list((run_dir / "lines").glob("*TRAIN001*"))
    assert_clean(tmp_path)


def test_pipeline_line_stage_skips_and_counts_a_view_whose_photo_fails(corpus, data_copy, tmp_path):
    bad = _unreadable_train001(data_copy)
    root = tmp_path / "pipe"
    outcome = run_hydra_app(
        "pipeline",
        [
            f"paths.data_dir={data_copy}",
            f"pipeline.root={root}",
            f"pipeline.line_ckpt={corpus.line_net}",
            f"pipeline.start_from={corpus.detector}",  # detector 0 given: no training
            "data.progress=false",
        ],
        tmp_path / "run",
    )
    assert outcome.code == 0 and "Traceback" not in outcome.text, outcome.text[-3000:]
    manifest = json.loads((root / "iter_0" / "lines" / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["metrics"]["views"] == 2 and manifest["metrics"]["views_failed"] == 1
    assert "line stage: skipped 1 views whose photo failed to load" in outcome.log
    assert str(bad) in outcome.log
    assert not list((root / "iter_0" / "lines").glob("*TRAIN001*"))
    assert not list(root.rglob(".*.partial"))
    assert_clean(tmp_path)


def test_train_skips_and_counts_a_segment_whose_photo_fails(corpus, data_copy, tmp_path):
    bad = _unreadable_train001(data_copy)
    run_dir = tmp_path / "run"
    outcome = run_hydra_app(
        "train",
        [
            f"paths.data_dir={data_copy}",
            "trainer.accelerator=cpu",
            "data.num_workers=0",
            "data.progress=false",
            "logger=csv",
            "callbacks.progress_bar.refresh_rate=0",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=1",
            "+trainer.limit_val_batches=0",
            "data.batch_size=1",
            "data.input_size=128",
            "test=false",
            *TINY_DETECTOR,
        ],
        run_dir,
    )
    assert outcome.code == 0 and "Traceback" not in outcome.text, outcome.text[-3000:]
    assert "skipped 1 segments of 1 photographs that could not be loaded: TRAIN001" in outcome.log
    assert f"Replace {bad} with a complete copy of the photograph" in outcome.log
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_size > 0
    assert_clean(tmp_path)


def test_eval_records_the_test_segments_it_skipped(corpus, data_copy, tmp_path):
    _unreadable_train001(data_copy)
    run_dir = tmp_path / "run"
    outcome = run_hydra_app(
        "evaluate",
        [
            f"ckpt_path={corpus.detector}",
            f"paths.data_dir={data_copy}",
            "data.test_sets=[train_full]",
            "trainer.accelerator=cpu",
            "data.num_workers=0",
            "data.progress=false",
            "logger=csv",
            "inference.score_thresh=0.99",
            "report.num_images=0",
        ],
        run_dir,
    )
    assert outcome.code == 0 and "Traceback" not in outcome.text, outcome.text[-3000:]
    assert "skipped 1 segments of 1 photographs" in outcome.log
    extra = json.loads((run_dir / "metrics.json").read_text())["extra"]
    assert extra["num_segments"] == 2
    assert extra.get("num_segments_skipped") == 1, extra
