"""Text-line hypotheses from synthetic binary line maps (cuneidet.lines.hypotheses)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cuneidet.data.line_geometry import LineHypotheses, MapGrid, on_line_window
from cuneidet.errors import ConfigError
from cuneidet.lines.hypotheses import METHODS, detect_lines

GRID32 = MapGrid(stride=32.0, offset=113.0)
GRID8 = MapGrid(stride=8.0, offset=101.0)  # the four stride-8 cells inside each stride-32 cell
MAP32 = (40, 60)
IMAGE = (2 * 113 + 32 * MAP32[0], 2 * 113 + 32 * MAP32[1])  # (1506, 2146)
X0, X1 = 250.0, 1850.0
TOL = 16.0  # half a stride-32 cell, in image px
SLOPE3 = math.tan(math.radians(3.0))


def line(y0: float, slope: float = 0.0, sag: float = 0.0, x0: float = X0, x1: float = X1):
    """A text line in image px: y = y0 + slope·(x − x0) + arc of height ``sag``, x in [x0, x1]."""
    return (y0, slope, sag, x0, x1)


def true_y(spec: tuple, x: np.ndarray) -> np.ndarray:
    y0, slope, sag, x0, x1 = spec
    t = np.clip((np.asarray(x, float) - x0) / (x1 - x0), 0.0, 1.0)
    return y0 + slope * (np.asarray(x, float) - x0) + sag * 4.0 * t * (1.0 - t)


def render(specs: list[tuple], grid: MapGrid = GRID32, half_px: float = 24.0) -> np.ndarray:
    """Binary map: cells whose centre lies within ``half_px`` (vertically) of a line."""
    scale = round(32 / grid.stride)
    shape = (MAP32[0] * scale, MAP32[1] * scale)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = grid.to_image(cols), grid.to_image(rows)
    out = np.zeros(shape, dtype=bool)
    for spec in specs:
        inside = (x >= spec[3]) & (x <= spec[4])
        out |= inside & (np.abs(y - true_y(spec, x)) <= half_px)
    return out


def add_bridge(mask: np.ndarray, grid: MapGrid, x: float, y_top: float, y_bottom: float) -> None:
    """A vertical bridge one stride-32 cell wide joining two lines."""
    xs = grid.to_image(np.arange(mask.shape[1]))
    ys = grid.to_image(np.arange(mask.shape[0]))
    cols = np.flatnonzero(np.abs(xs - x) <= 16)
    rows = np.flatnonzero((ys >= y_top) & (ys <= y_bottom))
    mask[np.ix_(rows, cols)] = True


def check_invariants(hyp: LineHypotheses, line_map: np.ndarray) -> None:
    assert hyp.label_map.shape == line_map.shape
    assert hyp.label_map.dtype == np.int32
    assert np.all((hyp.label_map >= 0) & (hyp.label_map <= len(hyp)))
    assert not (hyp.label_map > 0)[~line_map.astype(bool)].any()
    width = hyp.image_size[1]
    for i, tl in enumerate(hyp.lines):
        assert tl.index == i
        assert 0 <= tl.x_min < tl.x_max <= max(width - 1, tl.x_min + 1)
        poly = tl.polyline
        assert poly.ndim == 2 and poly.shape[1] == 2 and len(poly) >= 2
        assert np.all(np.diff(poly[:, 0]) > 0)
        assert poly[0, 0] == pytest.approx(tl.x_min) and poly[-1, 0] == pytest.approx(tl.x_max)
    centres = [float(tl.y_at(width / 2)) for tl in hyp.lines]
    assert centres == sorted(centres)
    if len(hyp) < 2:
        assert math.isnan(hyp.pitch)


def match(hyp: LineHypotheses, specs: list[tuple], x: float = 1050.0) -> list[float]:
    """Per true line (top to bottom), the |Δy| (px) of the detected line of the same rank."""
    assert len(hyp) == len(specs)
    return [
        abs(float(tl.y_at(x)) - float(true_y(s, x))) for tl, s in zip(hyp.lines, specs, strict=True)
    ]


HORIZONTAL = [line(y) for y in (273, 433, 593, 753, 913, 1073)]
SLOPED = [line(y, slope=SLOPE3) for y in (200, 400, 600, 800, 1000)]


@pytest.mark.parametrize("grid", [GRID32, GRID8], ids=["stride32", "stride8"])
@pytest.mark.parametrize("method", METHODS)
def test_horizontal_lines(grid: MapGrid, method: str) -> None:
    mask = render(HORIZONTAL, grid)
    hyp = detect_lines(mask, IMAGE, grid, method=method)
    check_invariants(hyp, mask)
    for x in (400.0, 1050.0, 1700.0):
        assert max(match(hyp, HORIZONTAL, x)) <= TOL
    assert hyp.pitch == pytest.approx(160.0, abs=TOL)
    assert all(tl.votes > 0 for tl in hyp.lines)


@pytest.mark.parametrize("grid", [GRID32, GRID8], ids=["stride32", "stride8"])
@pytest.mark.parametrize("method", METHODS)
def test_sloped_lines(grid: MapGrid, method: str) -> None:
    mask = render(SLOPED, grid)
    hyp = detect_lines(mask, IMAGE, grid, method=method)
    check_invariants(hyp, mask)
    assert len(hyp) == len(SLOPED)
    for tl in hyp.lines:
        assert tl.slope == pytest.approx(SLOPE3, abs=0.02)
        assert math.degrees(tl.angle) == pytest.approx(93.0, abs=1.2)
    assert max(match(hyp, SLOPED)) <= 32.0
    assert hyp.pitch == pytest.approx(200.0, abs=TOL)


@pytest.mark.parametrize("method", METHODS)
def test_curved_lines_follow_polyline(method: str) -> None:
    specs = [line(y, sag=64.0) for y in (273, 529, 785, 1041)]
    mask = render(specs)
    hyp = detect_lines(mask, IMAGE, method=method)
    check_invariants(hyp, mask)
    assert len(hyp) == len(specs)
    xs = np.array([300.0, 600.0, 1050.0, 1500.0, 1800.0])
    for tl, spec in zip(hyp.lines, specs, strict=True):
        poly_err = np.abs(tl.polyline_y_at(xs) - true_y(spec, xs))
        model_err = np.abs(tl.y_at(xs) - true_y(spec, xs))
        assert poly_err.max() <= GRID32.stride
        assert poly_err.max() < model_err.max()
        assert poly_err[2] <= model_err[2]  # arc's middle
        assert len(tl.polyline) > 2


def test_band_follows_a_bent_line() -> None:
    """Near the middle of an arc, a sign 0.9 half-pitches off the text line is in its band even
    where it lies more than half a pitch off the straight line model (the reference's band)."""
    specs = [line(y, sag=64.0) for y in (273, 529, 785, 1041)]
    hyp = detect_lines(render(specs), IMAGE)
    tl, half = hyp.lines[1], hyp.pitch / 2
    x = np.linspace(tl.x_min + 50, tl.x_max - 50, 41)
    on_line = tl.polyline_y_at(x)
    away = np.sign(on_line - tl.y_at(x))  # the side where the text bends away from the model
    inside = np.stack([x, on_line + away * 0.9 * half], axis=1)
    outside = np.stack([x, on_line + away * 1.1 * half], axis=1)
    assert hyp.band_contains(1, inside).all()
    assert not hyp.band_contains(1, outside).any()
    straight_miss = np.abs(inside[:, 1] - tl.y_at(x)) > half
    assert straight_miss.any(), "the straight model would have lost some of these signs"


@pytest.mark.parametrize("grid", [GRID32, GRID8], ids=["stride32", "stride8"])
@pytest.mark.parametrize("method", METHODS)
def test_lines_joined_by_bridges_stay_separate(grid: MapGrid, method: str) -> None:
    mask = render(HORIZONTAL, grid)
    for x in (500.0, 1000.0, 1500.0):
        add_bridge(mask, grid, x, 273, 433)
    for x in (800.0, 1300.0):
        add_bridge(mask, grid, x, 753, 913)
    hyp = detect_lines(mask, IMAGE, grid, method=method)
    check_invariants(hyp, mask)
    assert max(match(hyp, HORIZONTAL)) <= TOL
    # the bridges are split between their two lines
    assert set(np.unique(hyp.label_map[mask])) == set(range(1, len(HORIZONTAL) + 1))


@pytest.mark.parametrize("method", METHODS)
def test_doubled_band_is_merged_into_one_line(method: str) -> None:
    """A text line detected as two thin bands 64 px apart is one line, not two."""
    specs = [s for s in HORIZONTAL if s[0] != 593] + [line(561.0), line(625.0)]
    mask = render(specs, half_px=12.0)
    hyp = detect_lines(mask, IMAGE, method=method)
    check_invariants(hyp, mask)
    assert max(match(hyp, HORIZONTAL)) <= TOL


@pytest.mark.parametrize("grid", [GRID32, GRID8], ids=["stride32", "stride8"])
@pytest.mark.parametrize("method", METHODS)
def test_line_extents(grid: MapGrid, method: str) -> None:
    specs = [line(273), line(433), line(593, x0=1000.0), line(753, x1=1200.0)]
    mask = render(specs, grid)
    hyp = detect_lines(mask, IMAGE, grid, method=method)
    check_invariants(hyp, mask)
    assert max(match(hyp, specs, x=1100.0)) <= TOL
    for tl, spec in zip(hyp.lines, specs, strict=True):
        assert tl.x_min == pytest.approx(spec[3], abs=2 * grid.stride)
        assert tl.x_max == pytest.approx(spec[4], abs=2 * grid.stride)


@pytest.mark.parametrize(
    "line_map",
    [
        np.zeros(MAP32, dtype=bool),
        np.zeros((1, 1), dtype=bool),
        np.ones((1, 1), dtype=bool),
        np.ones((1, 60), dtype=bool),
        np.ones((40, 1), dtype=bool),
        np.ones((2, 2), dtype=bool),
        np.zeros((0, 5), dtype=bool),
    ],
    ids=["all_false", "1x1_false", "1x1_true", "one_row", "one_col", "2x2", "zero_rows"],
)
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_maps_do_not_raise(line_map: np.ndarray, method: str) -> None:
    hyp = detect_lines(line_map, IMAGE, method=method)
    check_invariants(hyp, line_map)
    assert len(hyp) <= 1
    assert math.isnan(hyp.pitch)
    if not line_map.any():
        assert hyp.lines == [] and not hyp.label_map.any()


@pytest.mark.parametrize("col", [30, 1, 58])
@pytest.mark.parametrize("method", METHODS)
def test_single_dot(col: int, method: str) -> None:
    mask = np.zeros(MAP32, dtype=bool)
    mask[20, col] = True
    hyp = detect_lines(mask, IMAGE, method=method)
    check_invariants(hyp, mask)
    assert len(hyp) <= 1
    assert math.isnan(hyp.pitch)


@pytest.mark.parametrize("shape", [(60,), (1, 40, 60), (2, 40, 60), ()])
def test_non_2d_map_raises_config_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="2-D"):
        detect_lines(np.zeros(shape, dtype=bool), IMAGE)


def test_bad_image_size_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        detect_lines(render(HORIZONTAL), (0, 100))


def test_accepts_integer_map_and_is_deterministic() -> None:
    mask = render(SLOPED).astype(np.uint8)
    first, second = detect_lines(mask, IMAGE), detect_lines(mask, IMAGE)
    assert first.line_map.dtype == bool
    assert first.to_dict() == second.to_dict()
    assert np.array_equal(first.label_map, second.label_map)


def test_fewer_num_lines_than_true_lines() -> None:
    mask = render(HORIZONTAL)
    hyp = detect_lines(mask, IMAGE, num_lines=2)
    check_invariants(hyp, mask)
    assert 1 <= len(hyp) <= int(1.9 * 2)
    true_ys = np.array([s[0] for s in HORIZONTAL])
    for tl in hyp.lines:
        assert np.abs(true_ys - tl.y_at(1050.0)).min() <= TOL


def test_non_positive_num_lines_means_default() -> None:
    mask = render(HORIZONTAL)
    default = detect_lines(mask, IMAGE).to_dict()
    assert detect_lines(mask, IMAGE, num_lines=0).to_dict() == default
    assert detect_lines(mask, IMAGE, num_lines=-3).to_dict() == default


@pytest.mark.parametrize("specs", [HORIZONTAL, SLOPED], ids=["horizontal", "sloped"])
@pytest.mark.parametrize("method", METHODS)
def test_stride8_matches_stride32(specs: list[tuple], method: str) -> None:
    coarse = detect_lines(render(specs, GRID32), IMAGE, GRID32, method=method)
    fine = detect_lines(render(specs, GRID8), IMAGE, GRID8, method=method)
    assert len(fine) == len(coarse) == len(specs)
    for a, b in zip(coarse.lines, fine.lines, strict=True):
        assert float(a.y_at(1050.0)) == pytest.approx(float(b.y_at(1050.0)), abs=24.0)
    assert fine.pitch == pytest.approx(coarse.pitch, abs=TOL)


def test_map_grid_round_trip() -> None:
    cells = np.array([0.0, 1.5, 10.0])
    assert np.allclose(GRID32.to_image(cells), [113.0, 161.0, 433.0])
    assert np.allclose(GRID32.to_map(GRID32.to_image(cells)), cells)
    with pytest.raises(ConfigError):
        MapGrid(stride=0.0)


def naive_on_line_mask(hyp: LineHypotheses, padding: int) -> np.ndarray:
    height, width = hyp.image_size
    out = np.zeros((height, width), dtype=bool)
    s, half = hyp.grid.stride, hyp.grid.stride / 2 + padding
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    for r, c in zip(*np.nonzero(hyp.line_map), strict=True):
        cx, cy = hyp.grid.offset + s * c, hyp.grid.offset + s * r
        out |= (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    return out


@pytest.mark.parametrize("padding", [0, 5])
def test_on_line_mask(padding: int) -> None:
    grid = MapGrid(stride=16.0, offset=10.0)
    line_map = np.zeros((6, 8), dtype=bool)
    line_map[1, 2:7] = True
    line_map[4, 0] = True  # its square is clipped at the image border
    line_map[5, 7] = True
    hyp = LineHypotheses([], float("nan"), np.zeros((6, 8), np.int32), line_map, grid, (90, 120))
    mask = hyp.on_line_mask(padding=padding)
    assert mask.shape == (90, 120) and mask.dtype == bool
    assert np.array_equal(mask, naive_on_line_mask(hyp, padding))
    # cell (row 1, col 2) centred at (x, y) = (42, 26): square of half side 8 + padding
    half = 8 + padding
    assert mask[26 - half : 26 + half + 1, 42 - half : 42 + half + 1].all()
    assert not mask[26 - half - 1, 42] and not mask[26, 42 - half - 1]
    assert not mask[60, 60]


def test_on_line_mask_padding_grows_mask() -> None:
    mask = render(HORIZONTAL)
    hyp = detect_lines(mask, IMAGE)
    tight, padded = hyp.on_line_mask(padding=0), hyp.on_line_mask()
    assert tight.shape == padded.shape == IMAGE
    assert padded[tight].all() and padded.sum() > tight.sum()
    assert padded[273, 1000] and not padded[353, 1000]


def test_to_dict_from_dict_round_trip() -> None:
    mask = render(SLOPED)
    hyp = detect_lines(mask, IMAGE)
    data = json.loads(json.dumps(hyp.to_dict()))
    assert set(data) == {"lines", "pitch", "grid", "image_size"}
    assert set(data["lines"][0]) == {
        "index",
        "angle",
        "dist",
        "votes",
        "x_min",
        "x_max",
        "polyline",
        "slope",
        "intercept",
        "support",
    }
    back = LineHypotheses.from_dict(data, hyp.label_map, hyp.line_map)
    assert back.to_dict() == hyp.to_dict()
    assert back.grid == hyp.grid and back.image_size == hyp.image_size
    assert np.array_equal(back.lines[1].polyline, hyp.lines[1].polyline)
    assert back.lines[2].y_at(700.0) == pytest.approx(hyp.lines[2].y_at(700.0))


def test_to_dict_pitch_none_when_nan() -> None:
    hyp = detect_lines(np.zeros(MAP32, dtype=bool), IMAGE)
    data = hyp.to_dict()
    assert data["pitch"] is None and data["lines"] == []
    json.dumps(data)
    back = LineHypotheses.from_dict(data, hyp.label_map, hyp.line_map)
    assert math.isnan(back.pitch) and len(back) == 0


def test_band_contains() -> None:
    hyp = detect_lines(render(HORIZONTAL), IMAGE)
    tl = hyp.lines[2]
    y = float(tl.y_at(1000.0))
    half = hyp.pitch / 2
    points = [
        (1000.0, y),
        (1000.0, y - half + 2),
        (1000.0, y + half - 2),
        (1000.0, y - half - 2),
        (1000.0, y + half + 2),
        (tl.x_min - 5.0, y),
        (tl.x_max + 5.0, y),
    ]
    assert hyp.band_contains(2, points).tolist() == [True, True, True, False, False, False, False]
    assert hyp.band_contains(2, (1000.0, y)).tolist() == [True]


def test_band_contains_default_pitch() -> None:
    mask = np.zeros(MAP32, dtype=bool)
    mask[10, 5:55] = True
    hyp = detect_lines(mask, IMAGE)
    assert len(hyp) == 1 and math.isnan(hyp.pitch)
    y = float(hyp.lines[0].y_at(1000.0))
    assert hyp.band_contains(0, [(1000.0, y + 60), (1000.0, y - 70)]).tolist() == [True, False]


def test_lines_of_different_slopes_and_short_lines_chained() -> None:
    """A tablet whose upper lines are short and whose lower lines bend: the chained method
    finds every line, each with its own slope."""
    specs = [
        line(200, x0=1100.0, x1=1500.0),
        line(330, x0=1000.0, x1=1700.0),
        line(460, slope=SLOPE3 / 2, x0=400.0, x1=1850.0),
        line(700, slope=-SLOPE3, x0=300.0, x1=1850.0),
        line(900, sag=60.0),
    ]
    mask = render(specs, half_px=20.0)
    hyp = detect_lines(mask, IMAGE, method="chained")
    check_invariants(hyp, mask)
    assert len(hyp) == len(specs)
    for tl, spec in zip(hyp.lines, specs, strict=True):
        xs = np.linspace(max(spec[3], tl.x_min), min(spec[4], tl.x_max), 9)
        assert np.abs(tl.polyline_y_at(xs) - true_y(spec, xs)).mean() <= TOL
    assert hyp.lines[3].slope == pytest.approx(-SLOPE3, abs=0.02)


def test_unknown_method_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown line method"):
        detect_lines(render(HORIZONTAL), IMAGE, method="magic")


def broken(y: float, gap: tuple[float, float], right_dy: float = 0.0) -> list[tuple]:
    """A horizontal line at ``y`` interrupted over ``gap`` (damage); its right piece shifted by
    ``right_dy``."""
    return [line(y, x1=gap[0]), line(y + right_dy, x0=gap[1])]


@pytest.mark.parametrize("grid", [GRID32, GRID8], ids=["stride32", "stride8"])
def test_lines_broken_by_damage_are_joined(grid: MapGrid) -> None:
    """Pieces of one line on either side of damage five pitches wide become one line, for
    every line of the view; a piece 3/8 of a pitch off its line stays apart."""
    ys = (273, 433, 593, 753, 913, 1073)
    specs = [piece for y in ys[:4] + ys[5:] for piece in broken(y, (650.0, 1450.0))]
    specs += broken(ys[4], (650.0, 1450.0), right_dy=60.0)
    mask = render(specs, grid)
    hyp = detect_lines(mask, IMAGE, grid, method="chained")
    check_invariants(hyp, mask)
    assert hyp.pitch == pytest.approx(160.0, abs=TOL)
    whole = [tl for tl in hyp.lines if tl.x_max - tl.x_min > 1200]
    assert len(whole) == 5
    for tl, y in zip(whole, ys[:4] + ys[5:], strict=True):
        assert tl.x_min <= 250 + 2 * 32 and tl.x_max >= 1850 - 2 * 32
        assert np.abs(tl.polyline_y_at(np.array([400.0, 1700.0])) - y).max() <= TOL
    pieces = [tl for tl in hyp.lines if tl.x_max - tl.x_min < 700]
    assert len(pieces) == 2  # 913 on the left, 973 on the right: not one line
    assert pieces[0].x_max < 700 < 1400 < pieces[1].x_min


def test_joining_never_merges_neighbouring_lines() -> None:
    """Staggered pieces of consecutive lines (one pitch apart) stay separate lines."""
    specs = [line(273, x1=900.0), line(433, x0=1100.0), line(593, x1=900.0), line(753, x0=1100.0)]
    mask = render(specs)
    hyp = detect_lines(mask, IMAGE, method="chained")
    assert len(hyp) == 4
    assert all(tl.x_max - tl.x_min < 1000 for tl in hyp.lines)


def test_keep_renumbers_lines_and_label_map() -> None:
    mask = render(HORIZONTAL)
    hyp = detect_lines(mask, IMAGE, method="chained")
    kept = hyp.keep([4, 1])
    check_invariants(kept, mask)
    assert [tl.index for tl in kept.lines] == [0, 1]
    assert kept.lines[0].polyline_y_at(1000.0) == pytest.approx(hyp.lines[1].polyline_y_at(1000.0))
    assert np.array_equal(kept.label_map == 1, hyp.label_map == 2)
    assert np.array_equal(kept.label_map == 2, hyp.label_map == 5)
    assert not np.isin(kept.label_map, [3, 4, 5, 6]).any()
    assert np.array_equal(kept.line_map, hyp.line_map)  # the ignore map keeps every text cell
    assert len(hyp.keep([])) == 0
    with pytest.raises(IndexError):
        hyp.keep([6])


def test_fraction_of_boxes_on_lines_flags_misregistered_annotations() -> None:
    from cuneidet.lines.audit import fraction_on_lines

    hyp = detect_lines(render(HORIZONTAL), IMAGE, method="chained")
    on_line = [(x - 50, y - 60, x + 50, y + 60) for y in (273, 593, 1073) for x in (400, 1200)]
    off = [(900, 1300, 1000, 1400), (5000, 100, 5100, 200)]  # between lines' ends; outside
    assert fraction_on_lines(hyp, np.array(on_line)) == 1.0
    assert fraction_on_lines(hyp, np.array(on_line + off)) == pytest.approx(6 / 8)
    assert fraction_on_lines(hyp, np.array(off)) == 0.0
    assert math.isnan(fraction_on_lines(hyp, np.zeros((0, 4))))


def test_on_line_window_is_the_crop_of_the_whole_mask() -> None:
    grid = MapGrid(stride=16.0, offset=10.0)
    line_map = np.zeros((6, 8), dtype=bool)
    line_map[1, 2:7] = True
    line_map[4, 0] = True
    hyp = LineHypotheses([], float("nan"), np.zeros((6, 8), np.int32), line_map, grid, (90, 120))
    whole = hyp.on_line_mask(padding=5)
    for y0, x0, h, w in [(0, 0, 90, 120), (13, 27, 40, 50), (70, 100, 20, 20), (80, 110, 30, 30)]:
        window = on_line_window(line_map, grid, (y0, x0, h, w), padding=5)
        assert window.shape == (h, w)
        inside = whole[y0 : y0 + h, x0 : x0 + w]
        assert np.array_equal(window[: inside.shape[0], : inside.shape[1]], inside)
        assert not window[inside.shape[0] :].any() and not window[:, inside.shape[1] :].any()
