"""Transliteration lines ↔ detected lines (cuneidet.align.line_assignment)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from cuneidet.align import (
    TransliterationLine,
    ViewTransliteration,
    assign_by_order,
    assign_gale_church,
    assign_lines,
    assignment_from_beads,
    gale_church,
    match_cost,
)
from cuneidet.align.line_assignment import rescale_to_max, text_lengths
from cuneidet.errors import ConfigError, DataFormatError

# prior lengths of a 5-line view (px) and its line indices (line 2 is absent: not visible)
TL_LENGTHS = [300.0, 250.0, 200.0, 280.0, 120.0]
TL_INDICES = [0, 1, 3, 4, 5]


def _line(line_idx: int, length: float) -> TransliterationLine:
    """One-sign line whose prior length is ``length``."""
    return TransliterationLine(line_idx, [1], [1], [0], [length])


def _view(lengths=TL_LENGTHS, indices=TL_INDICES) -> ViewTransliteration:
    return ViewTransliteration([_line(i, n) for i, n in zip(indices, lengths, strict=True)])


def _bead_shapes(beads) -> list[tuple[int, int]]:
    return [(len(s), len(t)) for s, t in beads]


# -- assign_by_order ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_detected", "expected"),
    [
        (5, [0, 1, 3, 4, 5]),
        (7, [0, 1, 3, 4, 5, -1, -1]),  # surplus → -1, no invented indices
        (3, [0, 1, 3]),
        (0, []),
    ],
)
def test_assign_by_order(num_detected: int, expected: list[int]) -> None:
    assigned = assign_by_order(num_detected, TL_INDICES)
    assert assigned.dtype == np.int64
    assert assigned.tolist() == expected


def test_assign_by_order_without_transliteration_lines() -> None:
    assert assign_by_order(3, []).tolist() == [-1, -1, -1]
    assert assign_by_order(0, []).tolist() == []
    with pytest.raises(DataFormatError, match="≥ 0"):
        assign_by_order(-1, TL_INDICES)


# -- match cost ---------------------------------------------------------------------------------


def test_match_cost_formula() -> None:
    assert match_cost(0.0, 0.0) == 0.0
    assert match_cost(200.0, 200.0) == 0.0
    delta = 100.0 / math.sqrt(150.0 * 6.0)
    expected = -100.0 * math.log(2.0 * (1.0 - 0.5 * (1.0 + math.erf(delta / math.sqrt(2.0)))))
    assert match_cost(200.0, 100.0) == pytest.approx(expected, rel=1e-9)
    assert match_cost(100.0, 200.0) == match_cost(200.0, 100.0)


def test_match_cost_stays_finite_and_increasing() -> None:
    costs = [match_cost(100.0 + d, 100.0) for d in (1e2, 1e3, 1e4, 1e5, 1e6, 1e8)]
    assert all(math.isfinite(c) for c in costs)
    assert costs == sorted(costs) and len(set(costs)) == len(costs)


# -- gale_church --------------------------------------------------------------------------------


def test_identical_lengths_align_one_to_one() -> None:
    beads = gale_church(TL_LENGTHS, TL_LENGTHS)
    assert beads == [((i,), (i,)) for i in range(5)]


def test_split_line_gives_a_two_one_bead() -> None:
    detected = [300.0, 250.0, 100.0, 100.0, 280.0, 120.0]  # transliteration line 3 split in two
    beads = gale_church(detected, TL_LENGTHS)
    assert ((2, 3), (2,)) in beads
    assert _bead_shapes(beads) == [(1, 1), (1, 1), (2, 1), (1, 1), (1, 1)]
    assert assign_gale_church(detected, _view()).tolist() == [0, 1, 3, 3, 4, 5]


def test_spurious_detected_line_is_unassigned() -> None:
    detected = [300.0, 250.0, 20.0, 200.0, 280.0, 120.0]
    assert gale_church(detected, TL_LENGTHS)[2] == ((2,), ())
    assert assign_gale_church(detected, _view()).tolist() == [0, 1, -1, 3, 4, 5]


def test_missing_detected_line_keeps_the_others() -> None:
    lengths = [300.0, 250.0, 30.0, 280.0, 120.0]  # a short line, not detected
    detected = [300.0, 250.0, 280.0, 120.0]
    beads = gale_church(detected, lengths)
    assert ((), (2,)) in beads
    assert assign_gale_church(detected, _view(lengths)).tolist() == [0, 1, 4, 5]


def test_one_two_bead_gives_the_first_index_only() -> None:
    detected = [600.0, 500.0, 560.0]  # the middle detected line covers two transliteration lines
    view = _view([600.0, 250.0, 250.0, 560.0], [0, 1, 2, 3])
    assert gale_church(detected, [600.0, 250.0, 250.0, 560.0])[1] == ((1,), (1, 2))
    assert assign_gale_church(detected, view).tolist() == [0, 1, 3]


def test_assignment_from_beads_semantics() -> None:
    beads = [((0,), (0,)), ((1, 2), (1,)), ((3,), (2, 3)), ((4,), ()), ((), (4,)), ((5, 6), (5, 6))]
    indices = [10, 11, 12, 13, 14, 15, 16]
    assigned = assignment_from_beads(beads, 7, indices)
    assert assigned.tolist() == [10, 11, 11, 12, -1, 15, 16]


def test_tie_break_prefers_one_one() -> None:
    free = {(1, 1): 0.0, (1, 0): 0.0, (0, 1): 0.0, (2, 1): 0.0, (1, 2): 0.0, (2, 2): 0.0}
    assert gale_church([0.0, 0.0], [0.0, 0.0], bead_costs=free) == [((0,), (0,)), ((1,), (1,))]


def test_rescales_transliteration_to_the_longest_detected_line() -> None:
    scaled = rescale_to_max(np.array([150.0, 125.0, 100.0]), np.array([600.0, 20.0]))
    np.testing.assert_allclose(scaled, [600.0, 500.0, 400.0])
    # prior lengths at half the detected scale still align one to one
    detected = [2 * n for n in TL_LENGTHS]
    assert assign_gale_church(detected, _view()).tolist() == TL_INDICES


def test_random_sequences_cover_every_index_once_in_order() -> None:
    rng = np.random.default_rng(0)
    allowed = {(1, 1), (1, 0), (0, 1), (2, 1), (1, 2), (2, 2)}
    for _ in range(200):
        source = rng.uniform(0, 400, rng.integers(0, 12)).round()
        target = rng.uniform(0, 400, rng.integers(0, 12)).round()
        beads = gale_church(source, target)
        assert set(_bead_shapes(beads)) <= allowed
        assert [i for s, _ in beads for i in s] == list(range(len(source)))
        assert [j for _, t in beads for j in t] == list(range(len(target)))


def test_random_assignments_repeat_indices_only_in_two_one_beads() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        detected = rng.uniform(0, 500, rng.integers(1, 12)).round()
        lengths = rng.uniform(1, 400, rng.integers(1, 12)).round()
        indices = sorted(rng.choice(40, len(lengths), replace=False).tolist())
        assigned = assign_gale_church(detected, _view(lengths, indices))
        assert len(assigned) == len(detected)
        assert set(assigned.tolist()) <= {*indices, -1}
        kept = assigned[assigned >= 0].tolist()
        assert kept == sorted(kept)  # monotone: reading order is kept
        beads = gale_church(detected, rescale_to_max(lengths, detected))
        split = {indices[t[0]] for s, t in beads if (len(s), len(t)) == (2, 1)}
        repeated = {k for k, n in Counter(kept).items() if n > 1}
        assert repeated <= split
        assert all(n <= 2 for n in Counter(kept).values())


def test_edge_cases() -> None:
    assert assign_gale_church([], _view()).tolist() == []
    assert assign_gale_church([], _view()).dtype == np.int64
    assert assign_gale_church([100.0, 50.0], ViewTransliteration([])).tolist() == [-1, -1]
    zero = assign_gale_church([0.0, 0.0], _view([0.0], [7]))  # all lengths 0: a tie, any one
    assert sorted(zero.tolist()) == [-1, 7]
    assert gale_church([], []) == []
    assert gale_church([5.0], []) == [((0,), ())]
    lines = [_line(4, 300.0), _line(9, 250.0)]  # a plain sequence of lines works too
    assert assign_gale_church([300.0, 250.0], lines).tolist() == [4, 9]


@pytest.mark.parametrize("bad", [[100.0, -1.0], [math.nan], [math.inf, 3.0]])
def test_bad_lengths_are_rejected(bad: list[float]) -> None:
    with pytest.raises(DataFormatError, match="finite and ≥ 0"):
        assign_gale_church(bad, _view())
    with pytest.raises(DataFormatError, match="finite and ≥ 0"):
        gale_church([1.0], bad)
    with pytest.raises(DataFormatError, match="finite and ≥ 0"):
        assign_lines(bad, _view(), method="order")


def test_bad_gale_church_settings() -> None:
    with pytest.raises(ConfigError, match=r"\(1, 0\) and \(0, 1\)"):
        gale_church([1.0], [1.0], bead_costs={(1, 1): 0.0})
    with pytest.raises(ConfigError, match=r"not \(0, 0\)"):
        gale_church([1.0], [1.0], bead_costs={(1, 0): 1.0, (0, 1): 1.0, (0, 0): 0.0})
    with pytest.raises(ConfigError, match="costs ≥ 0"):
        gale_church([1.0], [1.0], bead_costs={(1, 0): 1.0, (0, 1): -1.0})
    with pytest.raises(ConfigError, match="variance"):
        gale_church([1.0], [1.0], variance=0.0)


# -- assign_lines -------------------------------------------------------------------------------


def test_assign_lines_unknown_method() -> None:
    with pytest.raises(ConfigError, match=r"'hough'.*'order', 'gale_church'"):
        assign_lines([1.0], _view(), method="hough")


def test_assign_lines_methods() -> None:
    detected = [300.0, 250.0, 20.0, 200.0, 280.0, 120.0]  # a spurious third line
    assert assign_lines(detected, _view(), method="order").tolist() == [0, 1, 3, 4, 5, -1]
    assert assign_lines(detected, _view()).tolist() == [0, 1, -1, 3, 4, 5]
    assert assign_lines(detected, _view(), method="gale_church").tolist() == [0, 1, -1, 3, 4, 5]


def test_refit_scale_recovers_what_an_overlong_line_breaks() -> None:
    """The last transliteration line runs round the edge (6400 px, 12 sign heights seen), so
    scaling the longest to the longest shrinks the others by 2.7×; line 3 is not detected.
    Refitting the scale on the 1-1 beads recovers the true 1/128."""
    tl = [_line(i, n) for i, n in enumerate([960.0, 1600, 1920, 1280, 1920, 6400])]
    detected = [7.5, 12.5, 15.0, 15.0, 12.0]
    assert assign_gale_church(detected, tl, 1.0, rescale="max").tolist() == [1, 2, 3, 4, 5]
    assert assign_gale_church(detected, tl, 1.0, rescale="refit").tolist() == [0, 1, 2, 4, 5]
    text = ViewTransliteration(tl)
    assert assign_lines(detected, text, variance=1.0, rescale="refit").tolist() == [0, 1, 2, 4, 5]


def test_refit_keeps_consistent_lengths_aligned_one_to_one() -> None:
    detected = [n / 40 for n in TL_LENGTHS]
    for rescale in ("max", "refit"):
        assigned = assign_gale_church(detected, _view(), rescale=rescale)
        assert assigned.tolist() == TL_INDICES


def test_span_lengths_are_used_when_asked() -> None:
    """Two lines of equal visible length; the first has broken signs inside, so its span is
    longer, and only the span tells which detected line (short, long) is which."""
    short = TransliterationLine(0, [1], [1], [0], [300.0])
    gapped = TransliterationLine(1, [1, 1], [1, 1], [0, 2], [150.0, 150.0], span_length=700.0)
    detected = [7.0, 3.0]  # the gapped line first, then the short one, top to bottom
    text = [gapped, short]
    assert text_lengths(text, "visible").tolist() == [300.0, 300.0]
    assert text_lengths(text, "span").tolist() == [700.0, 300.0]
    assert assign_gale_church(detected, text, 1.0, text_length="span").tolist() == [1, 0]


@pytest.mark.parametrize(("option", "value"), [("text_length", "all"), ("rescale", "median")])
def test_unknown_length_options_are_config_errors(option: str, value: str) -> None:
    with pytest.raises(ConfigError, match=value):
        assign_gale_church([1.0], _view(), **{option: value})
