import numpy as np
import pytest

from cuneidet.data.tiling import Tile, paper_tile_origins, tile_segments


def test_reference_origins_follow_the_paper_grid():
    # W=1300: x in range(100, 1300-100-300=900, 300) -> 100, 400, 700
    # H=1000: y in range(100, 1000-100-200=700, 400) -> 100, 500
    origins = paper_tile_origins(1300, 1000)
    assert origins == [(100, 100), (400, 100), (700, 100), (100, 500), (400, 500), (700, 500)]


def test_small_segment_has_no_reference_tile():
    assert paper_tile_origins(499, 2000) == []
    assert paper_tile_origins(2000, 399) == []


def test_tiles_are_clipped_to_the_image():
    tiles = tile_segments([(1000, 1000)])
    # x in range(100, 600, 300) -> 100, 400; y in range(100, 700, 400) -> 100, 500
    assert [(t.x0, t.y0, t.width, t.height) for t in tiles] == [
        (100, 100, 600, 600),
        (400, 100, 600, 600),
        (100, 500, 600, 500),
        (400, 500, 600, 500),
    ]


def test_small_segments_whole_or_skipped(caplog):
    sizes = [(300, 200), (1300, 1000)]
    whole = tile_segments(sizes, small_segments="whole")
    assert whole[0] == Tile(0, 0, 0, 300, 200)
    skipped = tile_segments(sizes, small_segments="skip")
    assert all(t.segment == 1 for t in skipped)
    assert "smaller than the reference tiling" in caplog.text
    with pytest.raises(ValueError, match="small_segments"):
        tile_segments(sizes, small_segments="pad")


def test_contains_centres():
    tile = Tile(0, 100, 100, 600, 600)
    boxes = np.array([[90, 90, 130, 130], [50, 50, 100, 100], [650, 650, 720, 720]], np.float32)
    assert tile.contains_centres(boxes).tolist() == [True, False, True]
