"""Visible transliteration lines with prior sign widths (cuneidet.align.transliteration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cuneidet.align import (
    SIGN_HEIGHT,
    TransliterationLine,
    ViewTransliteration,
    prepare_transliteration,
    view_transliteration,
)
from cuneidet.data.csdd import CSDD
from cuneidet.errors import DataFormatError
from tests.fixtures_csdd import make_tiny_csdd

PRIORS = {1: (0.5, 1.0), 2: (1.25, 0.9), 3: (0.75, 1.0)}


def _rows(
    signs: list[tuple[int, int, int, int]], tablet: str = "P1", segm: int = 0
) -> pd.DataFrame:
    """Rows of one view from (line_idx, pos_idx, train_label, status); mzl = 100 + label."""
    return pd.DataFrame(
        {
            "collection": "train",
            "segm_idx": segm,
            "tablet_CDLI": tablet,
            "view_desc": "Obv",
            "rec_idx": range(len(signs)),
            "line_idx": [s[0] for s in signs],
            "pos_idx": [s[1] for s in signs],
            "train_label": [s[2] for s in signs],
            "mzl_label": [100 + s[2] for s in signs],
            "status": [s[3] for s in signs],
        }
    )


def _view() -> ViewTransliteration:
    signs = [
        (2, 1, 2, 1),  # line 2 out of order in the file, pos 1 before pos 0
        (2, 0, 1, 2),
        (2, 2, 7, 1),  # label without prior → 128 px
        (0, 0, 3, 1),
        (0, 1, 1, 0),  # lost sign
        (1, 0, 2, 0),  # line 1: all lost → dropped
        (1, 1, 3, 0),
    ]
    return prepare_transliteration(_rows(signs), PRIORS)


def test_drops_lost_signs_and_empty_lines() -> None:
    view = _view()
    assert view.num_lines == 2
    assert [line.line_idx for line in view.lines] == [0, 2]
    assert view.line_indices == [0, 2]
    assert view.lines[0].labels.tolist() == [3]
    np.testing.assert_array_equal(view.lengths, [1, 3])


def test_orders_signs_by_pos_idx() -> None:
    line = _view().lines[1]
    assert line.pos_idx.tolist() == [0, 1, 2]
    assert line.labels.tolist() == [1, 2, 7]
    assert line.mzl.tolist() == [101, 102, 107]
    assert len(line) == 3
    assert line.labels.dtype == np.int64 and line.widths.dtype == np.float64


def test_widths_centres_and_length() -> None:
    line = _view().lines[1]
    # 0.5·128 = 64, 1.25·128 = 160, label 7 has no prior → 128
    np.testing.assert_array_equal(line.widths, [64.0, 160.0, float(SIGN_HEIGHT)])
    # cumsum 64, 224, 352 minus half widths 32, 80, 64
    np.testing.assert_array_equal(line.centres, [32.0, 144.0, 288.0])
    assert line.length == 352.0
    assert _view().lines[0].length == 96.0  # 0.75·128


def test_widths_round_to_pixels() -> None:
    view = prepare_transliteration(_rows([(0, 0, 5, 1), (0, 1, 6, 1)]), {5: (0.71875, 1.0)})
    # 0.71875·128 = 92; label 6 defaults to 128; centres round(92 - 46), round(220 - 64)
    np.testing.assert_array_equal(view.lines[0].widths, [92.0, 128.0])
    np.testing.assert_array_equal(view.lines[0].centres, [46.0, 156.0])
    view = prepare_transliteration(_rows([(0, 0, 5, 1)]), {5: (0.7, 1.0)})
    assert view.lines[0].widths.tolist() == [90.0]  # round(89.6)


def test_len_min_max() -> None:
    view = _view()
    assert (view.len_min, view.len_max) == (1, 3)


def test_empty_rows_give_no_lines_and_default_lengths() -> None:
    empty = prepare_transliteration(_rows([]), PRIORS)
    assert empty == ViewTransliteration(lines=[])
    assert empty.num_lines == 0
    assert (empty.len_min, empty.len_max) == (4, 12)
    assert empty.lengths.tolist() == []
    all_lost = prepare_transliteration(_rows([(0, 0, 1, 0), (1, 0, 2, 0)]), PRIORS)
    assert all_lost.num_lines == 0
    assert (all_lost.len_min, all_lost.len_max) == (4, 12)


def test_mixed_views_are_rejected_by_name() -> None:
    rows = pd.concat([_rows([(0, 0, 1, 1)]), _rows([(0, 0, 1, 1)], tablet="P2", segm=3)])
    with pytest.raises(DataFormatError, match=r"\('P1', 0\).*\('P2', 3\)"):
        prepare_transliteration(rows, PRIORS)
    rows = pd.concat([_rows([(0, 0, 1, 1)]), _rows([(0, 1, 1, 1)], segm=1)])
    with pytest.raises(DataFormatError, match=r"\('P1', 0\), \('P1', 1\)"):
        prepare_transliteration(rows, PRIORS)


def test_mixed_collections_are_rejected() -> None:
    other = _rows([(0, 1, 1, 1)]).assign(collection="saa01")
    with pytest.raises(DataFormatError, match="saa01"):
        prepare_transliteration(pd.concat([_rows([(0, 0, 1, 1)]), other]), PRIORS)


def test_missing_column_is_named() -> None:
    rows = _rows([(0, 0, 1, 1)]).drop(columns=["status", "pos_idx"])
    with pytest.raises(DataFormatError, match=r"\['pos_idx', 'status'\]"):
        prepare_transliteration(rows, PRIORS)


def test_line_is_read_only_and_checks_sizes() -> None:
    line = _view().lines[1]
    with pytest.raises(ValueError, match="read-only"):
        line.widths[0] = 1.0
    with pytest.raises(DataFormatError, match="differ in length"):
        TransliterationLine(0, np.array([1, 2]), np.array([1]), np.array([0, 1]), np.ones(2))


def test_view_transliteration_reads_the_csdd(tmp_path: Path) -> None:
    csdd = CSDD(make_tiny_csdd(tmp_path / "data"))
    view = view_transliteration(csdd, "train", 0, "TAB001")
    # fixture: line 0 labels 1 (0.71875 → 92 px), 2 (0.93 → 119 px); line 1 keeps label 5 only
    assert view.line_indices == [0, 1]
    np.testing.assert_array_equal(view.lines[0].widths, [92.0, 119.0])
    assert view.lines[1].labels.tolist() == [5]
    assert view.lines[1].widths.tolist() == [102.0]  # 0.8 · 128 = 102.4
    saa = view_transliteration(csdd, "saa01", 0, "W001")
    assert saa.lengths.tolist() == [2, 2]
    assert view_transliteration(csdd, "train", 0, "W001").num_lines == 0


def test_span_counts_broken_signs_between_visible_ones() -> None:
    signs = [
        (0, 0, 1, 0),  # broken before the first visible sign: not in the span
        (0, 1, 1, 1),  # 64 px
        (0, 2, 2, 0),  # broken between visible signs: 160 px of clay
        (0, 3, 3, 2),  # 96 px
        (0, 4, 2, 0),  # broken after the last visible sign: not in the span
        (1, 0, 2, 1),  # line 1: nothing broken inside
        (1, 1, 3, 1),
    ]
    first, second = prepare_transliteration(_rows(signs), PRIORS).lines
    assert first.length == 64 + 96
    assert first.span == 64 + 160 + 96
    assert second.span_length is None and second.span == second.length == 160 + 96


def test_span_shorter_than_the_visible_length_is_rejected() -> None:
    with pytest.raises(DataFormatError, match="span_length"):
        TransliterationLine(0, [1, 2], [1, 2], [0, 1], [64.0, 160.0], span_length=100.0)
