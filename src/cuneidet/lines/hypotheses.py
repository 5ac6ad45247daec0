"""Text-line hypotheses from a line network's binary map (Dencker et al. 2020).

``method="reference"`` follows the reference ``post_process_line_detections``: skeleton →
focused straight-line Hough → peaks grouped by intersection → groups closer than half a line
pitch merged → probabilistic Hough segments as markers → watershed regions per line.
``method="chained"`` keeps the Hough steps for the dominant angle and the pitch and builds the
lines by chaining local segments instead (see :func:`_chain_groups`). All map-space parameters
are tuned for stride 32; length-like ones are rescaled by ``32 / stride`` for other strides.

Conventions: image pixels are those of the *scaled segment*; map cell (column c, row r) is
centred at image pixel ``(offset + stride * c, offset + stride * r)``. Hough lines use the map
frame ``x * cos(angle) + y * sin(angle) = dist`` with x = column, y = row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse.csgraph import connected_components
from skimage.draw import line as draw_line
from skimage.morphology import skeletonize
from skimage.segmentation import watershed
from skimage.transform import hough_line, hough_line_peaks, probabilistic_hough_line

from cuneidet.data.line_geometry import (
    DEFAULT_PITCH_PX,
    LineHypotheses,
    MapGrid,
    TextLine,
    _row_on_line,
)
from cuneidet.errors import ConfigError

REFERENCE_STRIDE = 32.0  # stride the reference parameters are tuned for
DEFAULT_NUM_LINES = 40  # reference default without transliteration
NUM_PEAKS_FACTOR = 1.9
_NUM_THETA = 50
_COARSE_THETA_DEG = (83.0, 97.0)
_FOCUS_HALF_DEG = 2.0
_SAME_RHO_CELLS = 3.0
_SEG_THRESHOLD_CELLS = 6.0
_SEG_LENGTH_CELLS = 8.0
_SEG_GAP_CELLS = 6.0
_RNG_SEED = 0
_CHAIN_HALF_DEG = 5.0  # chained method: segment angles within ±5° of the dominant angle
_CHAIN_SEG_CELLS = 4.0  # chained method: segment threshold / min length (stride-32 cells)
_CHAIN_GAP_CELLS = 2.0
_CHAIN_MAX_GAP_PITCHES = 4.0  # disjoint segments are linked across at most 4 line pitches
_CHAIN_GAP_TOLERANCE = 0.67  # ... and only when they meet within a third of a pitch
_CHAIN_MIN_COVERAGE = 0.5  # a chain's segments must cover half of its horizontal extent
_JOIN_MAX_GAP_PITCHES = 8.0  # chains are joined across damage up to 8 line pitches wide ...
_JOIN_MAX_OVERLAP_PITCHES = 0.5  # ... or overlapping by at most half a pitch ...
_JOIN_DY_PITCHES = 0.25  # ... when they meet within a quarter of a pitch
METHODS = ("reference", "chained")
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity, as the skeleton's


@dataclass
class _Groups:
    """Group-mean Hough lines (map frame)."""

    angle: np.ndarray
    dist: np.ndarray
    votes: np.ndarray

    def __len__(self) -> int:
        return len(self.angle)

    def y_at(self, x: float | np.ndarray) -> np.ndarray:
        return _row_on_line(self.angle, self.dist, x)

    def take(self, order: np.ndarray) -> _Groups:
        return _Groups(self.angle[order], self.dist[order], self.votes[order])


def _scaled(cells: float, stride: float) -> int:
    """A length in stride-32 cells, expressed in cells of ``stride`` (rounded, >= 1)."""
    return max(1, round(cells * REFERENCE_STRIDE / stride))


def _theta(low_deg: float, high_deg: float) -> np.ndarray:
    return np.linspace(np.deg2rad(low_deg), np.deg2rad(high_deg), _NUM_THETA)


def _focused_theta(skeleton: np.ndarray) -> np.ndarray | None:
    """Angle range ±2° around the median angle of the coarse Hough peaks (None if no peak)."""
    h, theta, d = hough_line(skeleton, theta=_theta(*_COARSE_THETA_DEG))
    if h.max() <= 0:
        return None
    _, angles, _ = hough_line_peaks(h, theta, d, min_distance=1, min_angle=16, num_peaks=50)
    if len(angles) == 0:
        return None
    median = float(np.median(np.rad2deg(angles)))
    return _theta(median - _FOCUS_HALF_DEG, median + _FOCUS_HALF_DEG)


def _find_peaks(
    skeleton: np.ndarray, theta: np.ndarray, num_peaks: int, len_min: int, len_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hough peaks (accum, angle, dist) with the reference's length-based threshold."""
    h, theta, d = hough_line(skeleton, theta=theta)
    threshold = (h.max() / float(len_max)) / 2.0 * len_min
    accum, angles, dists = hough_line_peaks(
        h, theta, d, min_distance=1, min_angle=14, num_peaks=num_peaks, threshold=threshold
    )
    return (np.asarray(accum, float), np.asarray(angles, float), np.asarray(dists, float))


def _components(adjacency: np.ndarray) -> np.ndarray:
    """Connected-component label per node of a symmetric boolean adjacency matrix."""
    _, labels = connected_components(adjacency, directed=False)
    return labels


def _intersection_links(
    angles: np.ndarray, dists: np.ndarray, interval: tuple[float, float], same_rho: float
) -> np.ndarray:
    """Peaks linked when their lines cross at a column inside ``interval`` (or coincide)."""
    a1, a2 = angles[:, None], angles[None, :]
    r1, r2 = dists[:, None], dists[None, :]
    det = np.sin(a2 - a1)
    parallel = np.abs(det) < 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = (r1 * np.sin(a2) - r2 * np.sin(a1)) / det
    crossing = ~parallel & (x_cross >= interval[0]) & (x_cross <= interval[1])
    return crossing | (parallel & (np.abs(r1 - r2) < same_rho))


def _area_links(groups: _Groups, interval: tuple[float, float], gap: float) -> np.ndarray:
    """Groups linked when the polygon between them has mean height below half the pitch."""
    y_lo = groups.y_at(interval[0])
    y_hi = groups.y_at(interval[1])
    mean_sep = np.abs((y_lo[:, None] - y_lo[None, :]) + (y_hi[:, None] - y_hi[None, :])) / 2.0
    return mean_sep < gap / 2.0


def _group_means(
    labels: np.ndarray, accum: np.ndarray, angles: np.ndarray, dists: np.ndarray
) -> _Groups:
    """Per label (0..n-1): vote-weighted mean angle and dist, plain mean accumulator."""
    count = np.bincount(labels).astype(float)
    total = np.bincount(labels, weights=accum)

    def weighted(values: np.ndarray) -> np.ndarray:
        return np.bincount(labels, weights=values * accum) / total

    return _Groups(weighted(angles), weighted(dists), total / count)


def _median_gap(groups: _Groups, x_centre: float, min_gap: float = 0.0) -> float:
    """Median vertical distance (cells) between consecutive group lines at the map centre.

    Gaps of at most ``min_gap`` are left out: two not yet merged Hough lines of one text line
    (e.g. its pieces left and right of damage) would otherwise drive the median to 0 and so stop
    the merge that needs it.
    """
    if len(groups) < 2:
        return float("nan")
    gaps = np.diff(np.sort(groups.y_at(x_centre)))
    gaps = gaps[gaps > min_gap]
    return float(np.median(gaps)) if len(gaps) else float("nan")


def _group_peaks(
    peaks: tuple[np.ndarray, np.ndarray, np.ndarray], width: int, same_rho: float
) -> _Groups:
    """Steps 3-4: group crossing peaks, then merge groups closer than half a pitch."""
    accum, angles, dists = peaks
    interval = (width / 8.0, width * 7.0 / 8.0)
    x_centre = (width - 1) / 2.0
    labels = _components(_intersection_links(angles, dists, interval, same_rho))
    groups = _group_means(labels, accum, angles, dists)
    gap = _median_gap(groups, x_centre, min_gap=same_rho / _SAME_RHO_CELLS)
    if len(groups) >= 2 and gap > 0:
        merged = _components(_area_links(groups, interval, gap))
        groups = _group_means(merged[labels], accum, angles, dists)
    return groups.take(np.argsort(groups.y_at(x_centre), kind="stable"))


def _segments(skeleton: np.ndarray, theta: np.ndarray, stride: float, len_max: int) -> np.ndarray:
    """Probabilistic-Hough segments as an (n, 2, 2) array of (x, y) endpoints."""
    segs = probabilistic_hough_line(
        skeleton,
        threshold=_scaled(_SEG_THRESHOLD_CELLS, stride),
        line_length=_scaled(min(_SEG_LENGTH_CELLS, len_max), stride),
        line_gap=_scaled(_SEG_GAP_CELLS, stride),
        theta=theta,
        rng=_RNG_SEED,
    )
    return np.asarray(segs, dtype=int).reshape(-1, 2, 2)


def _assign_segments(segs: np.ndarray, groups: _Groups) -> np.ndarray:
    """Index of the nearest group line per segment (closer endpoint, squared distance)."""
    cos, sin = np.cos(groups.angle), np.sin(groups.angle)
    sq = [(segs[:, k, 0:1] * cos + segs[:, k, 1:2] * sin - groups.dist) ** 2 for k in range(2)]
    return np.argmin(np.minimum(sq[0], sq[1]), axis=1)


def _markers(shape: tuple[int, int], segs: np.ndarray, seg_labels: np.ndarray) -> np.ndarray:
    """Marker image: each segment drawn with its group label + 1."""
    markers = np.zeros(shape, dtype=np.int32)
    for (p0, p1), label in zip(segs, seg_labels, strict=True):
        rr, cc = draw_line(p0[1], p0[0], p1[1], p1[0])
        markers[rr, cc] = label + 1
    return markers


def _label_regions(
    mask: np.ndarray,
    skeleton: np.ndarray,
    groups: _Groups,
    theta: np.ndarray,
    stride: float,
    len_max: int,
) -> np.ndarray:
    """Steps 5-6: watershed regions (label = group index + 1) seeded by Hough segments."""
    segs = _segments(skeleton, theta, stride, len_max)
    return _watershed(mask, skeleton, groups, segs, _assign_segments(segs, groups))


def _watershed(
    mask: np.ndarray,
    skeleton: np.ndarray,
    groups: _Groups,
    segs: np.ndarray,
    seg_labels: np.ndarray,
) -> np.ndarray:
    """Marker watershed on −EDT of the mask, markers = segments labelled by their group."""
    markers = _markers(mask.shape, segs, seg_labels)
    markers[~mask] = 0
    _seed_unmarked(markers, mask, skeleton, groups)
    distance = ndi.distance_transform_edt(mask)
    return watershed(-distance, markers, connectivity=2, mask=mask).astype(np.int32)


# -- the chained method ------------------------------------------------------------------------


def _chain_groups(
    skeleton: np.ndarray, theta: np.ndarray, hough_groups: _Groups, stride: float, width: int
) -> tuple[_Groups, np.ndarray, np.ndarray] | None:
    """Lines as chains of probabilistic-Hough segments.

    The reference's grouped Hough lines give the dominant angle and the line pitch; segments
    (angles within ±5° of the dominant one) are linked when they overlap horizontally and lie
    within half a pitch of each other there, or, when disjoint, when the left one extended by
    the dominant slope meets the right one within half a pitch. Each connected chain is a line,
    fitted by least squares on its segments (weighted by length); its votes are its length.
    """
    centre = float(np.mean(theta))
    wide = _theta(np.rad2deg(centre) - _CHAIN_HALF_DEG, np.rad2deg(centre) + _CHAIN_HALF_DEG)
    segs = np.asarray(
        probabilistic_hough_line(
            skeleton,
            threshold=_scaled(_CHAIN_SEG_CELLS, stride),
            line_length=_scaled(_CHAIN_SEG_CELLS, stride),
            line_gap=_scaled(_CHAIN_GAP_CELLS, stride),
            theta=wide,
            rng=_RNG_SEED,
        ),
        dtype=float,
    ).reshape(-1, 2, 2)
    if not len(segs):
        return None
    segs = np.where((segs[:, 0, 0] <= segs[:, 1, 0])[:, None, None], segs, segs[:, ::-1])
    gap = _median_gap(hough_groups, (width - 1) / 2.0)
    pitch = gap if np.isfinite(gap) and gap > 0 else DEFAULT_PITCH_PX / stride
    slope = -math.cos(centre) / math.sin(centre)
    labels = _components(_segment_links(segs, slope, pitch / 2.0))
    supported = np.array([_coverage(segs[labels == k]) for k in range(labels.max() + 1)])
    supported = supported >= _CHAIN_MIN_COVERAGE
    if not supported.any():
        return None
    segs, labels = segs[supported[labels]], np.cumsum(supported)[labels[supported[labels]]] - 1
    labels = _join_fragments(segs, labels, slope, pitch)
    groups = _fit_chains(segs, labels)
    order = np.argsort(groups.y_at((width - 1) / 2.0), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    traces = [_chain_trace(segs[labels == k]) for k in order]
    return groups.take(order), segs.astype(int), rank[labels], traces


def _join_fragments(segs: np.ndarray, labels: np.ndarray, slope: float, pitch: float) -> np.ndarray:
    """Join chains that are pieces of one text line interrupted by damage.

    A chain's right end and another chain's left end are joined when the gap between them is at
    most ``_JOIN_MAX_GAP_PITCHES`` (or they overlap by at most ``_JOIN_MAX_OVERLAP_PITCHES``)
    and, extended by the dominant slope to the middle of the gap, they meet within
    ``_JOIN_DY_PITCHES`` of a pitch: neighbouring text lines are a whole pitch apart, so this
    never joins two lines. Each end joins at most once, nearest gaps first. Joining comes after
    the coverage filter, so a line broken by a wide gap is not dropped for its low coverage.
    """
    count = int(labels.max()) + 1
    traces = [_chain_trace(segs[labels == k]) for k in range(count)]
    candidates = []
    for left in range(count):
        (left_cols, left_rows) = traces[left]
        for right in range(count):
            (right_cols, right_rows) = traces[right]
            if right == left or right_cols[0] <= left_cols[0] or right_cols[-1] <= left_cols[-1]:
                continue
            gap = right_cols[0] - left_cols[-1]
            if not -_JOIN_MAX_OVERLAP_PITCHES * pitch <= gap <= _JOIN_MAX_GAP_PITCHES * pitch:
                continue
            middle = (right_cols[0] + left_cols[-1]) / 2.0
            left_y = left_rows[-1] + slope * (middle - left_cols[-1])
            right_y = right_rows[0] + slope * (middle - right_cols[0])
            if abs(left_y - right_y) < _JOIN_DY_PITCHES * pitch:
                candidates.append((gap, left, right))
    merged = np.arange(count)
    right_end_used, left_end_used = set(), set()
    for _, left, right in sorted(candidates):
        if left in right_end_used or right in left_end_used or merged[left] == merged[right]:
            continue
        right_end_used.add(left)
        left_end_used.add(right)
        merged[merged == merged[right]] = merged[left]
    _, relabelled = np.unique(merged, return_inverse=True)
    return relabelled[labels]


def _coverage(members: np.ndarray) -> float:
    """Fraction of a chain's horizontal extent covered by its segments."""
    spans = sorted(zip(members[:, 0, 0], members[:, 1, 0], strict=True))
    covered, reach = 0.0, -np.inf
    for start, end in spans:
        start = max(start, reach)
        if end > start:
            covered += end - start
            reach = end
    extent = spans[-1][1] - spans[0][0] if spans else 0.0
    return covered / extent if extent > 0 else 1.0


def _chain_trace(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per map column of a chain's extent: the mean row of the segments covering it
    (interpolated across gaps)."""
    cols = np.arange(np.floor(members[:, 0, 0].min()), np.ceil(members[:, 1, 0].max()) + 1)
    total, count = np.zeros(len(cols)), np.zeros(len(cols))
    for (x0, y0), (x1, y1) in members:
        inside = (cols >= x0) & (cols <= x1)
        slope = (y1 - y0) / (x1 - x0) if x1 > x0 else 0.0
        total[inside] += y0 + slope * (cols[inside] - x0)
        count[inside] += 1
    covered = count > 0
    rows = np.interp(cols, cols[covered], total[covered] / count[covered])
    return cols, rows


def _segment_links(segs: np.ndarray, slope: float, tolerance: float) -> np.ndarray:
    """Which segments continue each other (see :func:`_chain_groups`)."""
    x0, y0, x1, y1 = segs[:, 0, 0], segs[:, 0, 1], segs[:, 1, 0], segs[:, 1, 1]
    seg_slope = np.where(x1 > x0, (y1 - y0) / np.maximum(x1 - x0, 1e-9), 0.0)

    def y_at(i: np.ndarray, x: np.ndarray) -> np.ndarray:
        return y0[i] + seg_slope[i] * (x - x0[i])

    n = len(segs)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    lo = np.maximum(x0[i], x0[j])
    hi = np.minimum(x1[i], x1[j])
    mid = (lo + hi) / 2.0
    overlap_dy = np.abs(y_at(i, mid) - y_at(j, mid))
    left = np.where(x0[i] <= x0[j], i, j)
    right = np.where(x0[i] <= x0[j], j, i)
    predicted = y1[left] + slope * (x0[right] - x1[left])
    gap_dy = np.abs(predicted - y0[right])
    gap = lo - hi
    near_gap = (gap <= _CHAIN_MAX_GAP_PITCHES * 2.0 * tolerance) & (
        gap_dy < _CHAIN_GAP_TOLERANCE * tolerance
    )
    return np.where(hi >= lo, overlap_dy < tolerance, near_gap)


def _fit_chains(segs: np.ndarray, labels: np.ndarray) -> _Groups:
    """Per chain: least-squares line through its segment endpoints (weights: lengths)."""
    angles, dists, votes = [], [], []
    for label in range(int(labels.max()) + 1):
        members = segs[labels == label]
        xs = members[:, :, 0].ravel()
        ys = members[:, :, 1].ravel()
        weights = np.repeat(np.hypot(*(members[:, 1] - members[:, 0]).T), 2) + 1e-6
        if np.ptp(xs) > 0:
            slope, intercept = np.polyfit(xs, ys, 1, w=np.sqrt(weights))
        else:
            slope, intercept = 0.0, float(np.average(ys, weights=weights))
        angle = math.atan2(1.0, -slope) if slope else math.pi / 2
        angles.append(angle)
        dists.append(intercept * math.sin(angle))
        votes.append(float(weights.sum() / 2.0))
    return _Groups(np.array(angles), np.array(dists), np.array(votes))


def _seed_unmarked(
    markers: np.ndarray, mask: np.ndarray, skeleton: np.ndarray, groups: _Groups
) -> None:
    """Seed components without a marker (too short for a segment) by their skeleton pixels."""
    components, _ = ndi.label(mask, structure=_EIGHT)
    marked = np.unique(components[markers > 0])
    unmarked = skeleton & ~np.isin(components, marked)
    rows, cols = np.nonzero(unmarked)
    if len(rows) == 0:
        return
    points = np.stack([cols, rows], axis=1)
    markers[rows, cols] = _assign_segments(np.stack([points, points], axis=1), groups) + 1


def _column_extent(region: np.ndarray, angle: float, dist: float) -> tuple[int, int]:
    """First/last map column of a region, or of the model line inside the map if empty."""
    cols = np.flatnonzero(region.any(axis=0))
    if len(cols) == 0:
        rows_count, width = region.shape
        rows = _row_on_line(angle, dist, np.arange(width))
        cols = np.flatnonzero((rows >= -0.5) & (rows <= rows_count - 0.5))
        if len(cols) == 0:
            cols = np.array([0, width - 1])
    return int(cols[0]), int(cols[-1])


def _image_extent(cols: tuple[int, int], grid: MapGrid, width: int) -> tuple[float, float]:
    """Column range → image x range, one stride wider on both sides, clipped to the image."""
    x_min = float(np.clip(grid.to_image(cols[0]) - grid.stride, 0, width - 1))
    x_max = float(np.clip(grid.to_image(cols[1]) + grid.stride, 0, width - 1))
    if x_max - x_min < 1.0:  # degenerate (tiny image): keep a strictly increasing polyline
        x_min = max(0.0, min(x_min, width - 2.0))
        x_max = x_min + 1.0
    return x_min, x_max


def _image_line(angle: float, dist: float, grid: MapGrid) -> tuple[float, float]:
    """Map-frame polar line → image-frame slope and intercept."""
    slope = -math.cos(angle) / math.sin(angle)
    intercept_map = dist / math.sin(angle)
    return slope, grid.offset * (1.0 - slope) + grid.stride * intercept_map


def _skeleton_trace(skeleton_region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column with skeleton pixels: median row, smoothed by a 3-column running median."""
    rows, cols = np.nonzero(skeleton_region)
    if len(cols) == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(cols, kind="stable")
    rows, cols = rows[order], cols[order]
    uniq, starts = np.unique(cols, return_index=True)
    centres = np.array([np.median(chunk) for chunk in np.split(rows, starts[1:])])
    return uniq.astype(float), ndi.median_filter(centres, size=3, mode="nearest")


def _polyline(
    trace: tuple[np.ndarray, np.ndarray],
    grid: MapGrid,
    extent: tuple[float, float],
    slope: float,
    intercept: float,
) -> np.ndarray:
    """Polyline (image px) along a trace (map columns, rows), spanning exactly [x_min, x_max]."""
    x_min, x_max = extent
    cols, rows = trace
    xs, ys = grid.to_image(cols), grid.to_image(rows)
    keep = (xs > x_min) & (xs < x_max)
    xs, ys = xs[keep], ys[keep]
    if len(xs) < 2:
        ends = np.array([x_min, x_max])
        return np.stack([ends, slope * ends + intercept], axis=1)
    y_first = ys[0] + slope * (x_min - xs[0])
    y_last = ys[-1] + slope * (x_max - xs[-1])
    return np.stack([np.r_[x_min, xs, x_max], np.r_[y_first, ys, y_last]], axis=1)


def _make_line(
    index: int,
    groups: _Groups,
    label_map: np.ndarray,
    skeleton: np.ndarray,
    grid: MapGrid,
    width: int,
    trace: tuple[np.ndarray, np.ndarray] | None = None,
) -> TextLine:
    """Assemble one TextLine from its group and its watershed region.

    ``trace`` (chained method: the chain's segments per map column) gives the polyline, and the
    region's extent is clipped to the trace's (±2 stride-32 cells, as skeleton ends fall short of
    the band's ends); otherwise the skeleton inside the region gives the polyline.
    """
    angle, dist = float(groups.angle[index]), float(groups.dist[index])
    region = label_map == index + 1
    columns = _column_extent(region, angle, dist)
    if trace is None:
        trace = _skeleton_trace(skeleton & region)
    else:
        reach = _scaled(_CHAIN_GAP_CELLS, grid.stride)
        first, last = int(trace[0][0]) - reach, int(trace[0][-1]) + reach
        columns = (max(columns[0], first), min(columns[1], last))
        if columns[0] > columns[1]:
            columns = (int(trace[0][0]), int(trace[0][-1]))
    extent = _image_extent(columns, grid, width)
    slope, intercept = _image_line(angle, dist, grid)
    return TextLine(
        index=index,
        angle=angle,
        dist=dist,
        votes=float(groups.votes[index]),
        x_min=extent[0],
        x_max=extent[1],
        polyline=_polyline(trace, grid, extent, slope, intercept),
        slope=slope,
        intercept=intercept,
    )


def _as_mask(line_map: np.ndarray) -> np.ndarray:
    arr = np.asarray(line_map)
    if arr.ndim != 2:
        raise ConfigError(
            f"line_map must be a 2-D (rows, cols) map, got shape {arr.shape}; "
            "squeeze batch/channel axes first"
        )
    return arr.astype(bool)


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or min(image_size) < 1:
        raise ConfigError(f"image_size must be (height, width) >= 1, got {image_size}")
    return int(image_size[0]), int(image_size[1])


def _empty(mask: np.ndarray, image_size: tuple[int, int], grid: MapGrid) -> LineHypotheses:
    return LineHypotheses(
        lines=[],
        pitch=float("nan"),
        label_map=np.zeros(mask.shape, dtype=np.int32),
        line_map=mask,
        grid=grid,
        image_size=image_size,
    )


def _pitch(lines: list[TextLine], groups: _Groups, width: int, stride: float) -> float:
    """Median vertical spacing of consecutive lines at the map centre, in image px."""
    if len(lines) < 2:
        return float("nan")
    return _median_gap(groups, (width - 1) / 2.0) * stride


def detect_lines(
    line_map: np.ndarray,
    image_size: tuple[int, int],
    grid: MapGrid = MapGrid(),
    num_lines: int | None = None,
    len_min: int = 4,
    len_max: int = 12,
    method: str = "reference",
) -> LineHypotheses:
    """Text-line hypotheses from a binary line map (reference ``post_process_line_detections``).

    ``num_lines`` is the number of visible transliteration lines (None or <= 0: 40);
    ``len_min``/``len_max`` the min/max visible signs per line. Degenerate maps (empty, fewer
    than 2 rows or columns, no Hough peak) give no lines; a non-2-D map raises ConfigError.

    ``method="reference"`` groups global Hough lines as the reference does; ``"chained"`` keeps
    the Hough step only for the dominant angle and the line pitch, and builds each line by
    chaining local probabilistic-Hough segments (robust to curved lines, short lines and lines
    of different slopes on one tablet; see :func:`_chain_groups`).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown line method {method!r}; choose one of {METHODS}")
    mask = _as_mask(line_map)
    image_size = _check_image_size(image_size)
    if min(mask.shape) < 2 or not mask.any():
        return _empty(mask, image_size, grid)
    num_lines = DEFAULT_NUM_LINES if num_lines is None or num_lines <= 0 else int(num_lines)
    len_max = max(1, int(len_max))
    len_min = max(1, int(len_min))
    skeleton = skeletonize(mask)
    theta = _focused_theta(skeleton)
    if theta is None:
        return _empty(mask, image_size, grid)
    num_peaks = max(1, int(num_lines * NUM_PEAKS_FACTOR))
    peaks = _find_peaks(skeleton, theta, num_peaks, len_min, len_max)
    if len(peaks[0]) == 0:
        return _empty(mask, image_size, grid)
    width = mask.shape[1]
    groups = _group_peaks(peaks, width, float(_scaled(_SAME_RHO_CELLS, grid.stride)))
    if method == "chained":
        chained = _chain_groups(skeleton, theta, groups, grid.stride, width)
        if chained is None:
            return _empty(mask, image_size, grid)
        groups, segs, seg_labels, traces = chained
        label_map = _watershed(mask, skeleton, groups, segs, seg_labels)
        lines = [
            _make_line(i, groups, label_map, skeleton, grid, image_size[1], traces[i])
            for i in range(len(groups))
        ]
    else:
        label_map = _label_regions(mask, skeleton, groups, theta, grid.stride, len_max)
        lines = [
            _make_line(i, groups, label_map, skeleton, grid, image_size[1])
            for i in range(len(groups))
        ]
    return LineHypotheses(
        lines=lines,
        pitch=_pitch(lines, groups, width, grid.stride),
        label_map=label_map,
        line_map=mask,
        grid=grid,
        image_size=image_size,
    )
