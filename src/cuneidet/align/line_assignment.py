"""Transliteration lines ↔ detected lines: iteration 0 of Dencker et al. 2020.

Detected lines are known only by their top-to-bottom order and a length that the caller passes
(the reference passes Hough accumulator values; ``cuneidet.lines`` passes the line's extent in
sign heights by default). Every function here returns, for each detected line ``i`` (top to
bottom), the transliteration ``line_idx`` assigned to it, or ``-1``.

Two methods:

``order``
    The reference's basic rule: the i-th detected line gets the i-th visible transliteration line.
    Surplus detected lines get ``-1`` (the reference invents indices ``last + 1, last + 2, …`` for
    them, which name no transliteration line; we do not), surplus transliteration lines stay
    unassigned.
``gale_church``
    The reference's adaptation of Gale & Church's length-based sentence alignment: dynamic
    programming over beads (1-1, 1-0, 0-1, 2-1, 1-2, 2-2) whose cost is a length-mismatch term
    plus a bead penalty. Transliteration lines use their prior length (``text_length``:
    ``visible``, the reference's sum of visible sign widths, or ``span``, which also counts the
    broken signs between visible ones), rescaled so the longest equals the longest detected
    line (``rescale="max"``, the reference). ``rescale="refit"`` then re-estimates the scale as
    the median detected/prior length ratio of the 1-1 beads and aligns again, until the scale
    repeats: one overlong transliteration line (text running round the edge) no longer shrinks
    every other line.

Bead semantics (detected, transliteration):

* 1-1: the detected line gets that line index;
* 1-0: a spurious detected line, ``-1``; 0-1: a transliteration line left unassigned;
* 2-1: a transliteration line split into two detected lines: both get its index (the only case
  where an index repeats);
* 1-2: one detected line covering two transliteration lines: it gets the *first* index, the second
  line stays unassigned (one index per detected line);
* 2-2: paired in order, first with first and second with second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from cuneidet.align.transliteration import TransliterationLine, ViewTransliteration
from cuneidet.errors import ConfigError, DataFormatError

Bead = tuple[tuple[int, ...], tuple[int, ...]]
"""(source indices, target indices) of one aligned group."""

BEAD_COSTS: Mapping[tuple[int, int], float] = {
    (1, 1): 0.0,
    (1, 0): 230.0,
    (0, 1): 230.0,
    (2, 1): 1000.0,
    (1, 2): 1000.0,
    (2, 2): 2000.0,
}
"""Penalty of each bead (source count, target count), in tie-break order (first wins a tie)."""

VARIANCE = 6.0
"""Variance per unit length of the length difference (the reference's call uses 6.0)."""

LINE_ASSIGNMENT_METHODS = ("order", "gale_church")
TEXT_LENGTHS = ("visible", "span")
RESCALINGS = ("max", "refit")
MAX_REFITS = 10

_LOG_FLOOR = 1e-300
_ASYMPTOTIC_FROM = 25.0  # erfc(25) ≈ 8e-274: beyond this, use the asymptotic series of erfc


def _check_lengths(lengths: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(lengths, dtype=np.float64)
    if array.ndim != 1:
        raise DataFormatError(f"{what} must be a 1-D sequence of lengths, got shape {array.shape}")
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        where = np.flatnonzero(bad).tolist()
        raise DataFormatError(
            f"{what} must be finite and ≥ 0; positions {where} hold {array[bad].tolist()}"
        )
    return array


def _log_erfc(u: float) -> float:
    """``ln(erfc(u))`` for ``u ≥ 0``, finite for any ``u`` (asymptotic series for large ``u``)."""
    if u < _ASYMPTOTIC_FROM:
        return math.log(max(math.erfc(u), _LOG_FLOOR))
    inv = 1.0 / (2.0 * u * u)
    series = 1.0 - inv + 3.0 * inv * inv - 15.0 * inv**3
    return -u * u - math.log(u * math.sqrt(math.pi)) + math.log(series)


def match_cost(lx: float, ly: float, variance: float = VARIANCE) -> float:
    """Length term of a bead with summed lengths ``lx`` and ``ly``: ``-100 ln(2 (1 - Φ(|δ|)))``.

    ``δ = (lx - ly) / sqrt((lx + ly) / 2 * variance)`` (0 when ``lx + ly == 0``). The two-sided
    tail ``2 (1 - Φ(z)) = erfc(z / √2)`` is evaluated in log space, so the cost stays finite and
    increasing however large ``|δ|`` is (like the reference's ``norm.logsf``).
    """
    total = lx + ly
    if total <= 0:
        return 0.0
    delta = abs(lx - ly) / math.sqrt(total / 2.0 * variance)
    return max(0.0, -100.0 * _log_erfc(delta / math.sqrt(2.0)))


def _back_pointers(
    x: np.ndarray, y: np.ndarray, variance: float, bead_costs: Mapping[tuple[int, int], float]
) -> list[list[tuple[int, int] | None]]:
    """Back-pointer table of the minimum-cost bead sequence over prefixes ``x[:i]``, ``y[:j]``."""
    cx = np.concatenate([[0.0], np.cumsum(x)])
    cy = np.concatenate([[0.0], np.cumsum(y)])
    cost = np.full((len(x) + 1, len(y) + 1), np.inf)
    cost[0, 0] = 0.0
    back: list[list[tuple[int, int] | None]] = [[None] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(len(x) + 1):
        for j in range(len(y) + 1):
            for (di, dj), penalty in bead_costs.items():
                if (i == j == 0) or di > i or dj > j:
                    continue
                lx, ly = cx[i] - cx[i - di], cy[j] - cy[j - dj]
                total = cost[i - di, j - dj] + match_cost(lx, ly, variance) + penalty
                if total < cost[i, j]:
                    cost[i, j] = total
                    back[i][j] = (di, dj)
    return back


def gale_church(
    source_lengths: Sequence[float],
    target_lengths: Sequence[float],
    variance: float = VARIANCE,
    bead_costs: Mapping[tuple[int, int], float] = BEAD_COSTS,
) -> list[Bead]:
    """Gale-Church length-based alignment of two sequences.

    Returns the beads ``(source indices, target indices)`` in order; together they cover every
    source and target index exactly once. Each bead costs :func:`match_cost` of its summed
    lengths plus its penalty in ``bead_costs`` (1-0 and 0-1 beads included, with one side 0); the
    total is minimised by dynamic programming. Ties go to the bead listed first in ``bead_costs``
    (1-1, then 1-0, 0-1, 2-1, 1-2, 2-2 by default). ``bead_costs`` must hold (1, 0) and (0, 1) so
    that every pair of sequences has an alignment.
    """
    x = _check_lengths(source_lengths, "source lengths")
    y = _check_lengths(target_lengths, "target lengths")
    if not {(1, 0), (0, 1)} <= set(bead_costs):
        raise ConfigError(f"bead_costs must include (1, 0) and (0, 1), got {sorted(bead_costs)}")
    if any(min(k) < 0 or sum(k) == 0 or c < 0 for k, c in bead_costs.items()):
        raise ConfigError(
            f"bead_costs need beads (m, n) ≥ 0, not (0, 0), and costs ≥ 0: {bead_costs}"
        )
    if variance <= 0 or not math.isfinite(variance):
        raise ConfigError(f"variance must be finite and > 0, got {variance}")
    back = _back_pointers(x, y, variance, bead_costs)
    beads: list[Bead] = []
    i, j = len(x), len(y)
    while i > 0 or j > 0:
        di, dj = back[i][j]  # type: ignore[misc]  # set for every (i, j) ≠ (0, 0)
        beads.append((tuple(range(i - di, i)), tuple(range(j - dj, j))))
        i, j = i - di, j - dj
    return beads[::-1]


def assignment_from_beads(
    beads: Sequence[Bead], num_detected: int, tl_line_indices: Sequence[int]
) -> np.ndarray:
    """Per detected line (bead sources), the line index of its bead's targets, or -1.

    Applies the bead semantics of the module docstring: 2-2 beads are paired in order, otherwise
    every detected line of a bead gets the bead's first target line (none: -1).
    """
    assigned = np.full(num_detected, -1, dtype=np.int64)
    for sources, targets in beads:
        if not targets:
            continue
        if len(sources) == len(targets):
            for s, t in zip(sources, targets, strict=True):
                assigned[s] = tl_line_indices[t]
        else:
            assigned[list(sources)] = tl_line_indices[targets[0]]
    return assigned


def assign_by_order(num_detected: int, tl_line_indices: Sequence[int]) -> np.ndarray:
    """The i-th detected line gets ``tl_line_indices[i]``; surplus detected lines get -1.

    Unlike the reference (which invents indices ``last + 1, …`` for surplus detected lines), the
    surplus is marked unassigned; surplus transliteration lines are left out.
    """
    if num_detected < 0:
        raise DataFormatError(f"num_detected must be ≥ 0, got {num_detected}")
    assigned = np.full(num_detected, -1, dtype=np.int64)
    count = min(num_detected, len(tl_line_indices))
    assigned[:count] = np.asarray(tl_line_indices, dtype=np.int64)[:count]
    return assigned


def _tl_lines(
    tl_lines: Sequence[TransliterationLine] | ViewTransliteration,
) -> list[TransliterationLine]:
    return list(tl_lines.lines if isinstance(tl_lines, ViewTransliteration) else tl_lines)


def rescale_to_max(lengths: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``lengths`` scaled so their maximum equals ``reference``'s (as is if all zero)."""
    if len(lengths) == 0 or lengths.max() <= 0:
        return lengths.astype(np.float64)
    top = reference.max() if len(reference) else 0.0
    return lengths * (top / lengths.max())


def one_to_one_scale(beads: Sequence[Bead], source: np.ndarray, target: np.ndarray) -> float | None:
    """Median ``source / target`` length ratio over the 1-1 beads (None without a usable one)."""
    ratios = [
        source[s[0]] / target[t[0]]
        for s, t in beads
        if len(s) == len(t) == 1 and target[t[0]] > 0 and source[s[0]] > 0
    ]
    return float(np.median(ratios)) if ratios else None


def refit_gale_church(
    source: np.ndarray, target: np.ndarray, variance: float, max_refits: int = MAX_REFITS
) -> list[Bead]:
    """Gale–Church with the target lengths rescaled to the source's, the scale refitted.

    Starts from :func:`rescale_to_max`; then sets the scale to the median length ratio of the
    1-1 beads (:func:`one_to_one_scale`) and aligns again, until a scale repeats (to 3 decimals,
    cycles included) or after ``max_refits`` refits.
    """
    scaled = rescale_to_max(target, source)
    beads = gale_church(source, scaled, variance)
    seen: set[float] = set()
    for _ in range(max_refits):
        scale = one_to_one_scale(beads, source, target)
        if scale is None or round(scale, 3) in seen:
            break
        seen.add(round(scale, 3))
        beads = gale_church(source, target * scale, variance)
    return beads


def text_lengths(lines: Sequence[TransliterationLine], kind: str = "visible") -> np.ndarray:
    """Prior length (px) of each transliteration line: ``visible`` or ``span`` (see above)."""
    if kind not in TEXT_LENGTHS:
        raise ConfigError(f"unknown text length {kind!r}; choose one of {TEXT_LENGTHS}")
    return np.array([line.length if kind == "visible" else line.span for line in lines])


def assign_gale_church(
    detected_lengths: Sequence[float],
    tl_lines: Sequence[TransliterationLine] | ViewTransliteration,
    variance: float = VARIANCE,
    text_length: str = "visible",
    rescale: str = "max",
) -> np.ndarray:
    """Assign transliteration lines to detected lines with :func:`gale_church`.

    ``detected_lengths`` are the detected lines' lengths (the reference: Hough accumulator
    values), top to bottom. The transliteration lines' prior lengths (``text_length``) are
    rescaled by ``rescale`` (see the module docstring); the defaults are the reference's.
    """
    detected = _check_lengths(detected_lengths, "detected line lengths")
    if rescale not in RESCALINGS:
        raise ConfigError(f"unknown rescaling {rescale!r}; choose one of {RESCALINGS}")
    lines = _tl_lines(tl_lines)
    prior = text_lengths(lines, text_length)
    if len(detected) == 0 or not lines:
        return np.full(len(detected), -1, dtype=np.int64)
    if rescale == "refit":
        beads = refit_gale_church(detected, prior, variance)
    else:
        beads = gale_church(detected, rescale_to_max(prior, detected), variance)
    return assignment_from_beads(beads, len(detected), [line.line_idx for line in lines])


def assign_lines(
    detected_lengths: Sequence[float],
    transliteration: ViewTransliteration,
    method: str = "gale_church",
    variance: float = VARIANCE,
    text_length: str = "visible",
    rescale: str = "max",
) -> np.ndarray:
    """Transliteration ``line_idx`` (or -1) per detected line, by ``method`` (order/gale_church)."""
    if method not in LINE_ASSIGNMENT_METHODS:
        raise ConfigError(
            f"unknown line assignment method {method!r}; choose one of {LINE_ASSIGNMENT_METHODS}"
        )
    detected = _check_lengths(detected_lengths, "detected line lengths")
    if method == "order":
        return assign_by_order(len(detected), transliteration.line_indices)
    return assign_gale_church(detected, transliteration, variance, text_length, rescale)
