"""Malformed CSDD tables (``cuneidet-data``) and bad files for ``cuneidet-oracle``.

Every CSDD table is checked when it is read, by every entry point; ``cuneidet-data check`` is the
cheapest one to run, so the table cases go through it. An error names the file, the row (1-based
line including the header) or column, and what is expected; exit code 2, no traceback. The table
of the cases is docs/bad_inputs.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from cuneidet.cli.data import main as data_main
from cuneidet.cli.oracle import main as oracle_main
from tests.badinput.conftest import Corpus
from tests.badinput.support import INPUTS, assert_clean, run_argparse_app

BOXES = Path("annotations") / "bbox_annotations_train_full.csv"
SEGMENTS = Path("segments") / "tablet_segments_train.csv"
LABELS = Path("meta") / "newLabels.json"


def _replace(relative: Path, old: str, new: str) -> Callable[[Path], None]:
    def edit(csdd: Path) -> None:
        path = csdd / relative
        text = path.read_text()
        assert old in text, (path, old)
        path.write_text(text.replace(old, new, 1))

    return edit


def _drop_column(relative: Path, column: str) -> Callable[[Path], None]:
    def edit(csdd: Path) -> None:
        frame = pd.read_csv(csdd / relative)
        frame.drop(columns=[column]).to_csv(csdd / relative, index=False)

    return edit


def _write(relative: Path, text: str) -> Callable[[Path], None]:
    def edit(csdd: Path) -> None:
        (csdd / relative).write_text(text)

    return edit


FIRST_BOX = '"[40, 40, 160, 164]","[40, 40, 160, 164]"'

#: id -> (edit of csdd/, command, needles)
TABLE_CASES: dict[str, tuple[Callable[[Path], None], list[str], tuple[str, ...]]] = {
    "data-boxes-missing-column": (
        _drop_column(BOXES, "relative_bbox"),
        ["check"],
        (
            "bbox_annotations_train_full.csv: missing required column(s) ['relative_bbox']",
            "expected columns: ['segm_idx'",
        ),
    ),
    "data-boxes-malformed-bbox-string": (
        _replace(BOXES, FIRST_BOX, '"[40, 40, 160]","[40, 40, 160]"'),
        ["check"],
        (
            "bbox_annotations_train_full.csv: malformed bbox '[40, 40, 160]' in row 2",
            "expected '[x1, y1, x2, y2]'",
        ),
    ),
    "data-boxes-label-wrong-type": (
        _replace(BOXES, ",20,2,", ",20,two,"),
        ["check"],
        ("bbox_annotations_train_full.csv: row 2", "train_label='two'", "expected an integer"),
    ),
    "data-boxes-zero-byte-csv": (
        _write(BOXES, ""),
        ["check"],
        ("bbox_annotations_train_full.csv: cannot be parsed as CSV",),
    ),
    "data-segments-nan-scale": (
        _replace(SEGMENTS, ",1.0,True", ",nan,True"),
        ["check"],
        ("tablet_segments_train.csv: row 2", "scale='nan'", "expected a number"),
    ),
    "data-segments-duplicate-key": (
        _replace(SEGMENTS, "1,TRAIN001", "0,TRAIN001"),
        ["check"],
        ("tablet_segments_train.csv: segm_idx 0 repeats in row 3", "must be unique"),
    ),
    "data-labels-not-json": (
        _write(LABELS, "{not json"),
        ["show", "--segment", "train/0", "--out", "{t}/out/show.png"],
        ("newLabels.json: not valid JSON",),
    ),
}


@pytest.mark.parametrize("edit, command, needles", TABLE_CASES.values(), ids=TABLE_CASES.keys())
def test_malformed_table_is_a_clear_error(data_copy, tmp_path, edit, command, needles):
    edit(data_copy / "csdd")
    argv = [part.format(t=tmp_path) for part in command]
    summary = tmp_path / "out" / "summary.json"
    if argv[0] == "check":
        argv += ["--json", str(summary)]
    outcome = run_argparse_app(data_main, ["--data-dir", str(data_copy), *argv])
    outcome.assert_error(2, *needles)
    assert_clean(tmp_path, "summary.json", "show.png")


def test_out_of_range_labels_are_counted_not_trained(data_copy, tmp_path):
    """A box with a train label ≥ 240 (no class of the detector): counted in the summary."""
    _replace(BOXES, ",20,2,", ",2500,250,")(data_copy / "csdd")
    summary = tmp_path / "out" / "summary.json"
    outcome = run_argparse_app(
        data_main, ["--data-dir", str(data_copy), "check", "--json", str(summary)]
    )
    assert outcome.code == 0 and "Traceback" not in outcome.text, outcome.text
    train = json.loads(summary.read_text())["box_sets"]["train_full"]
    assert train["rows"] == train["in_range_boxes"] + 1
    assert_clean(tmp_path)


# --------------------------------------------------------------------------- cuneidet-oracle


def _oracle(corpus: Corpus, tmp_path: Path, image: Path | None = None, ckpt: Path | None = None):
    drawing = image or corpus.good_photo
    return run_argparse_app(
        oracle_main, ["predict", str(drawing), "--ckpt", str(ckpt or tmp_path / "none.ckpt")]
    )


def _in(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / INPUTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_oracle_image_that_is_not_an_image(corpus, tmp_path):
    notes = _in(tmp_path, "drawing.png", b"a text file named like a picture\n")
    _oracle(corpus, tmp_path, image=notes).assert_error(
        2, f"cannot read {notes} as an image", "give a PNG or JPEG drawing"
    )


def test_oracle_image_zero_byte(corpus, tmp_path):
    empty = _in(tmp_path, "empty.jpg", b"")
    _oracle(corpus, tmp_path, image=empty).assert_error(
        2, f"cannot read {empty} as an image", "give a PNG or JPEG drawing"
    )


def test_oracle_checkpoint_missing(corpus, tmp_path):
    _oracle(corpus, tmp_path).assert_error(
        2, f"no oracle-bone model at {tmp_path / 'none.ckpt'}", "experiment=oracle_bone"
    )


def test_oracle_checkpoint_truncated(corpus, tmp_path):
    _oracle(corpus, tmp_path, ckpt=corpus.truncated).assert_error(
        2, f"{corpus.truncated} is not a readable checkpoint", "copy it again"
    )


def test_oracle_checkpoint_of_a_sign_detector(corpus, tmp_path):
    _oracle(corpus, tmp_path, ckpt=corpus.detector).assert_error(
        2, f"{corpus.detector} is not an oracle-bone model", "experiment=oracle_bone"
    )
