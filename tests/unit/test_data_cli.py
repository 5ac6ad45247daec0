"""The ``cuneidet-data`` command (cuneidet.cli.data) on the tiny fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cuneidet.cli.data import main
from tests.fixtures_csdd import TINY_COUNTS, make_tiny_csdd


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_tiny_csdd(tmp_path / "data")


def _run(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), *args])


def test_check_prints_counts_and_writes_json(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports" / "summary.json"
    assert _run(data_dir, "check", "--json", str(out)) == 0
    text = capsys.readouterr().out
    assert "train_full" in text and "train_B" in text and "saa01" in text
    assert "Weak set (saa01): 2 segments, 1 tablets, 8 signs" in text
    assert "2 annotated tablets, none missing" in text
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert summary["box_sets"] == TINY_COUNTS["box_sets"]
    assert summary["collections"] == TINY_COUNTS["collections"]
    assert summary["weak_set"] == TINY_COUNTS["weak_set"]
    assert summary["photos"]["missing_count"] == 0
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_check_strict_fails_on_missing_photos(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (data_dir / "csdd" / "images" / "TAB001.jpg").unlink()
    assert _run(data_dir, "check") == 0
    assert "1 missing" in capsys.readouterr().out
    assert _run(data_dir, "check", "--strict") == 1
    assert "TAB001" in capsys.readouterr().out


def test_check_without_photo_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = make_tiny_csdd(tmp_path / "bare", with_images=False)
    assert _run(data_dir, "check") == 0
    assert "2 missing" in capsys.readouterr().out
    assert _run(data_dir, "check", "--strict") == 1


def test_show_writes_a_png(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "png" / "train_0.png"
    assert _run(data_dir, "show", "--segment", "train/0", "--out", str(out)) == 0
    with Image.open(out) as image:
        image.load()
        assert image.size == (200, 160)  # the scaled segment: 100×80 at scale 2.0


def test_show_by_tablet_and_view_with_set(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rev.png"
    args = ["show", "--tablet", "TAB001", "--view", "rev", "--set", "train_full", "--out", str(out)]
    assert _run(data_dir, *args) == 0
    with Image.open(out) as image:
        assert image.size == (150, 150)


def test_show_segment_without_boxes_in_the_set(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain.png"
    assert (
        _run(data_dir, "show", "--segment", "train/1", "--set", "train_B", "--out", str(out)) == 0
    )
    with Image.open(out) as image:
        assert image.size == (150, 150)


def test_show_without_photo_is_an_error(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "show", "--segment", "saa01/1") == 2
    assert "W001" in capsys.readouterr().err


def test_show_errors_are_clear(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "show", "--segment", "train/42") == 2
    assert "Unknown segment train/42" in capsys.readouterr().err
    assert _run(data_dir, "show", "--segment", "train/2") == 2
    assert "not assigned" in capsys.readouterr().err
    assert _run(data_dir, "show", "--segment", "nope/1") == 2
    assert "show --list" in capsys.readouterr().err
    assert _run(data_dir, "show", "--tablet", "TAB001") == 2
    assert "train/0 (Obv), train/1 (Rev)" in capsys.readouterr().err
    assert _run(data_dir, "show", "--segment", "train/0", "--set", "bogus") == 2
    assert "Unknown box set 'bogus'" in capsys.readouterr().err


def test_show_list(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "show", "--list", "--set", "train_B") == 0
    text = capsys.readouterr().out
    assert "train/0" in text and "train/3" in text and "train/1" not in text


def test_missing_data_dir_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path / "nowhere"), "check"]) == 2
    assert "error:" in capsys.readouterr().err
