"""The forge: layouts, glyphs, rendering, caching, photo sources and bad input."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cuneidet.data.csdd import CSDD
from cuneidet.data.sources import ChainSource, build_photo_source
from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.forge.glyphs import GlyphBank, fallback_glyph, load_font
from cuneidet.forge.layout import (
    ViewSpec,
    clip_to_view,
    layout_from_boxes,
    layout_from_transliteration,
    layout_view,
)
from cuneidet.forge.render import (
    ForgeParams,
    TabletStyle,
    local_boxes,
    press_signs,
    render_view,
    sign_impression,
)
from cuneidet.forge.runner import render_many
from cuneidet.forge.source import ForgeSource
from cuneidet.forge.store import TRUTH_COLUMNS, Forge, tablet_rng
from tests.fixtures_csdd import make_tiny_csdd
from tests.fixtures_font import make_cuneiform_font

PRIORS = {1: (0.72, 0.94), 2: (0.93, 0.94), 3: (1.5, 1.0), 4: (1.2, 0.9), 5: (0.8, 1.0)}


@pytest.fixture
def data(tmp_path) -> Path:
    root = make_tiny_csdd(tmp_path / "data")
    make_cuneiform_font(root / "fonts" / "NotoSansCuneiform-Regular.ttf")
    return root


@pytest.fixture
def forge(data, tmp_path) -> Forge:
    return Forge(data, forge_dir=tmp_path / "forge", seed=3)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _view(signs: list[tuple[int, int, int, int, int]], bbox=(0, 0, 600, 400), scale=2.0):
    return ViewSpec("saa01", 0, "Obv", bbox, scale, signs=np.array(signs, dtype=np.int64))


# -- layout --------------------------------------------------------------------------------------


def test_layout_from_transliteration_keeps_reading_order_and_sign_height():
    rows = [(line, pos, 1, 1, 1) for line in range(3) for pos in range(4)]
    view = _view(rows)
    rng = np.random.default_rng(0)
    kind, signs = layout_view(view, rng, PRIORS)
    assert kind == "transliteration"
    assert len(signs) == 12
    for line in range(3):
        members = sorted((s for s in signs if s.line_idx == line), key=lambda s: s.pos_idx)
        lefts = [s.x1 for s in members]
        assert lefts == sorted(lefts), "signs must follow pos_idx left to right"
        assert all(a.x2 <= b.x1 + 1e-6 for a, b in itertools.pairwise(members))
    centres = [np.mean([(s.y1 + s.y2) / 2 for s in signs if s.line_idx == k]) for k in range(3)]
    assert centres == sorted(centres), "lines must go top to bottom"
    heights = np.array([s.y2 - s.y1 for s in signs])
    # 128 px in the scaled segment = 64 photo px at scale 2; priors 0.94/0.9 of that, ±12 %
    assert np.all((heights > 0.7 * 64) & (heights < 1.3 * 64))
    x0, y0, x1, y1 = view.bbox
    assert all(x0 <= s.x1 < s.x2 <= x1 and y0 <= s.y1 < s.y2 <= y1 for s in signs)


def test_layout_squeezes_lines_and_signs_that_do_not_fit():
    rows = [(line, pos, 1, 3, 1) for line in range(12) for pos in range(20)]
    view = _view(rows, bbox=(100, 50, 400, 350), scale=1.0)
    signs = clip_to_view(
        layout_from_transliteration(view, np.random.default_rng(1), PRIORS, height=128.0), view.bbox
    )
    assert len(signs) == 240, "every sign stays inside the view"
    assert max(s.y2 - s.y1 for s in signs) < 300 / 12


def test_layout_along_polylines_follows_them():
    rows = [(line, pos, 1, 1, 1) for line in range(2) for pos in range(3)]
    view = _view(rows)
    view.polylines = [
        np.array([[20.0, 100.0], [580.0, 140.0]]),
        np.array([[20.0, 260.0], [580.0, 260.0]]),
    ]
    kind, signs = layout_view(view, np.random.default_rng(0), PRIORS)
    assert kind == "lines"
    for sign in signs:
        centre_x = (sign.x1 + sign.x2) / 2
        expected = 100 + 40 * (centre_x - 20) / 560 if sign.line_idx == 0 else 260
        assert abs((sign.y1 + sign.y2) / 2 - expected) < 10


def test_layout_from_boxes_recovers_lines_and_positions():
    boxes = np.array(
        [[200, 10, 240, 50], [10, 12, 50, 52], [100, 100, 140, 140], [20, 98, 60, 138]], dtype=float
    )
    view = ViewSpec(
        "train",
        0,
        "Obv",
        (0, 0, 300, 200),
        2.0,
        boxes=boxes,
        box_labels=np.array([[1, 1], [110, 3], [839, 5], [1, 1]]),
    )
    signs = layout_from_boxes(view)
    placed = {(s.line_idx, s.pos_idx): (s.mzl, s.box) for s in signs}
    assert placed[(0, 0)] == (110, (10, 12, 50, 52))
    assert placed[(0, 1)][0] == 1
    assert placed[(1, 0)] == (1, (20, 98, 60, 138))
    assert placed[(1, 1)][0] == 839


def test_empty_and_unknown_layouts():
    blank = ViewSpec("saa01", 2, "", (0, 0, 50, 50), float("nan"))
    assert layout_view(blank, np.random.default_rng(0), PRIORS) == ("blank", [])
    with pytest.raises(ConfigError, match="layout"):
        layout_view(blank, np.random.default_rng(0), PRIORS, requested="spiral")


# -- glyphs --------------------------------------------------------------------------------------


def test_label_without_glyph_gets_a_deterministic_fallback(data):
    bank = GlyphBank(data / "fonts" / "NotoSansCuneiform-Regular.ttf", CSDD(data).sign_list)
    assert bank.has_font_glyph(1)  # AŠ is in the fixture font
    assert not bank.has_font_glyph(27)  # KA×TU has no code point in the sign list
    assert not bank.has_font_glyph(0)  # unknown sign
    mask = bank.mask(27)
    assert mask.any() and mask.max() == 1
    np.testing.assert_array_equal(mask, fallback_glyph(27))
    assert not np.array_equal(fallback_glyph(27), fallback_glyph(28))


def test_missing_font_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"fonts\.google\.com.*forge\.font"):
        load_font(tmp_path / "fonts" / "missing.ttf")
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(DataNotFoundError, match="Cannot read the font"):
        load_font(bad)


def test_forge_without_font_names_where_to_put_it(tmp_path):
    data = make_tiny_csdd(tmp_path / "data")
    forge = Forge(data, forge_dir=tmp_path / "forge")
    with pytest.raises(DataNotFoundError, match=r"NotoSansCuneiform-Regular\.ttf"):
        forge.render("W001")
    assert not list((tmp_path / "forge").rglob("*.jpg"))


# -- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [1, 2, 0])
def test_sign_impression_stays_in_its_box(status):
    rng = np.random.default_rng(status)
    params = ForgeParams()
    style = TabletStyle.draw(params, rng)
    glyph = fallback_glyph(5)
    depth, ink = sign_impression(glyph, (37, 29), status, 30.0, style, params, rng)
    assert depth.shape == ink.shape == (29, 37)
    assert (depth >= 0).all()
    if status == 1:
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        # the glyph spans most of its box
        assert rows[-1] - rows[0] + 1 >= 0.6 * 29 or cols[-1] - cols[0] + 1 >= 0.6 * 37


def test_every_glyph_is_pressed_inside_its_ground_truth_box(data):
    bank = GlyphBank(data / "fonts" / "NotoSansCuneiform-Regular.ttf", CSDD(data).sign_list)
    rows = [(line, pos, mzl, 1, 1) for line in range(4) for pos, mzl in enumerate([1, 27, 110, 0])]
    view = _view(rows, bbox=(30, 40, 530, 440), scale=2.5)
    rng = np.random.default_rng(7)
    params = ForgeParams()
    style = TabletStyle.draw(params, rng)
    _, signs = layout_view(view, rng, PRIORS)
    signs = clip_to_view(signs, view.bbox)
    local = local_boxes(view, signs)
    impressions = press_signs((400, 500), signs, local, bank, style, params, 50.0, rng)
    inside = np.zeros_like(impressions, dtype=bool)
    for x1, y1, x2, y2 in local:
        inside[y1:y2, x1:x2] = True
        assert impressions[y1:y2, x1:x2].max() > 0, "every intact sign leaves ink"
    assert impressions[~inside].max(initial=0) == 0
    rgb, alpha = render_view(view, signs, bank, style, params, 50.0, rng)
    assert rgb.shape == (400, 500, 3) and alpha.shape == (400, 500)
    assert rgb.min() >= 0 and rgb.max() <= 1


def test_render_is_deterministic_and_seed_dependent(data, tmp_path):
    first = Forge(data, forge_dir=tmp_path / "a", seed=3)
    second = Forge(data, forge_dir=tmp_path / "b", seed=3)
    other = Forge(data, forge_dir=tmp_path / "c", seed=4)
    for forge in (first, second, other):
        assert forge.render("W001")
    assert _digest(first.image_path("W001")) == _digest(second.image_path("W001"))
    assert _digest(first.truth_path("W001")) == _digest(second.truth_path("W001"))
    assert _digest(first.image_path("W001")) != _digest(other.image_path("W001"))
    assert tablet_rng(3, "W001").random() != tablet_rng(3, "W002").random()


def test_photo_frame_truth_and_layout_choice(forge, data):
    forge.render("TAB001")
    forge.render("W001")
    photo = Image.open(forge.image_path("TAB001"))
    segments = CSDD(data).segments(assigned_only=False)
    tab = segments[segments.tablet_CDLI == "TAB001"]
    assert photo.width >= tab.x1.max() and photo.height >= tab.y1.max()
    truth = forge.truth(["TAB001", "W001"])
    assert list(truth.columns) == TRUTH_COLUMNS
    tab_truth = truth[truth.tablet_CDLI == "TAB001"]
    # train/0 has 3 boxes, train/1 two (the segm_idx -1 row of TAB003 is not drawn)
    assert sorted(tab_truth.groupby("segm_idx").size().to_dict().items()) == [(0, 3), (1, 2)]
    assert set(tab_truth.layout) == {"boxes"}
    w_truth = truth[truth.tablet_CDLI == "W001"]
    assert set(w_truth.layout) == {"transliteration"}
    assert len(w_truth) == 8  # all transliterated signs of W001, broken ones included
    assert set(w_truth.status) <= {0, 1, 2}
    for row in truth.itertuples():
        bbox = [int(v) for v in row.bbox.strip("[]").split(",")]
        rel = [int(v) for v in row.relative_bbox.strip("[]").split(",")]
        seg = segments[
            (segments.collection == row.collection) & (segments.segm_idx == row.segm_idx)
        ].iloc[0]
        assert rel == [bbox[0] - seg.x0, bbox[1] - seg.y0, bbox[2] - seg.x0, bbox[3] - seg.y0]
        assert seg.x0 <= bbox[0] < bbox[2] <= seg.x1 and seg.y0 <= bbox[1] < bbox[3] <= seg.y1


def test_all_broken_and_empty_transliterations_render(data, tmp_path):
    path = data / "csdd" / "transliterations" / "transliterations_saa01.csv"
    table = pd.read_csv(path)
    table["status"] = 0
    table.to_csv(path, index=False)
    forge = Forge(data, forge_dir=tmp_path / "forge")
    assert forge.render("W001")
    assert set(forge.truth(["W001"]).status) == {0}
    assert forge.render("W003")  # a tablet with one unassigned, sign-less segment
    assert forge.truth(["W003"]).empty


def test_interrupted_write_leaves_no_half_image(forge, monkeypatch):
    def disk_full(self, fp, *args, **kwargs):
        fp.write(b"\xff\xd8 half a jpeg")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        forge.render("W001")
    assert not forge.image_path("W001").exists()
    assert not forge.is_rendered("W001")
    assert not [p for p in forge.directory.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert forge.render("W001")
    Image.open(forge.image_path("W001")).verify()


# -- runner and sources ----------------------------------------------------------------------------


def test_render_many_is_parallel_cached_and_counts_failures(forge, data, tmp_path, monkeypatch):
    tablets = forge.planner.tablets_of(collections=["saa01", "train"])
    assert tablets == ["TAB001", "TAB002", "W001", "W002", "W003"]
    report = render_many(forge, tablets, workers=2, progress=False)
    assert sorted(report.rendered) == tablets and not report.failed
    single = Forge(data, forge_dir=tmp_path / "single", seed=3)
    render_many(single, tablets, workers=1, progress=False)
    for tablet in tablets:
        assert _digest(forge.image_path(tablet)) == _digest(single.image_path(tablet))
    again = render_many(forge, tablets, workers=2, progress=False)
    assert sorted(again.cached) == tablets and not again.rendered

    def broken(self, spec):
        raise ValueError(f"cannot draw {spec.tablet}")

    fresh = Forge(data, forge_dir=tmp_path / "fresh", seed=3)
    monkeypatch.setattr(Forge, "render_spec", broken)
    report = render_many(fresh, ["W001", "W002"], workers=1, progress=False)
    assert sorted(report.failed) == ["W001", "W002"]
    assert "cannot draw W001" in report.failed["W001"]
    assert report.as_dict()["failed"] == 2


def test_unknown_tablet_and_parameter_are_clear_errors(forge, data):
    with pytest.raises(ConfigError, match="Unknown tablets"):
        forge.planner.tablets_of(tablets=["NOPE"])
    with pytest.raises(ConfigError, match="wedge_colour"):
        Forge(data, params={"wedge_colour": 3})


def test_forge_photo_sources(data, tmp_path):
    options = {"forge_dir": str(tmp_path / "forge"), "seed": 1}
    forge_source = build_photo_source("forge", data, **options)
    assert isinstance(forge_source, ForgeSource)
    assert forge_source.has("W001") and not forge_source.has("NOPE")
    image = forge_source.load("W001")
    assert image.mode == "RGB"
    mixed = build_photo_source("folder+forge", data, **options)
    assert isinstance(mixed, ChainSource) and mixed.fall_through
    real = Image.open(data / "csdd" / "images" / "TAB001.jpg")
    assert np.array_equal(np.asarray(mixed.load("TAB001")), np.asarray(real.convert("RGB")))
    assert np.array_equal(np.asarray(mixed.load("W001")), np.asarray(image))


def test_supervised_on_forge_is_opt_in_and_uses_visible_truth(data, tmp_path):
    from cuneidet.data.datamodule import CSDDDataModule

    options = {"forge_dir": str(tmp_path / "forge"), "seed": 2}

    def datamodule(**extra):
        return CSDDDataModule(
            str(data),
            image_source="folder+forge",
            image_source_options=options,
            test_sets=[],
            val_fraction=0.0,
            num_workers=0,
            progress=False,
            **extra,
        )

    plain = datamodule()
    plain.setup("fit")
    assert {s.collection for s in plain.train_segments} == {"train"}
    assert not list((tmp_path / "forge").glob("*/truth/W001.csv")), "no forge render unasked"

    module = datamodule(forge_train_collections=["saa01"])
    module.setup("fit")
    forged = [s for s in module.train_segments if s.collection == "saa01"]
    assert forged and len(module.train_samples) == len(module.train_segments)
    truth = Forge(data, **options).truth(["W001"])
    visible = truth[(truth.status > 0)]
    assert sum(len(s.labels) for s in forged) == len(visible)
    assert all(s.tablet == "W001" for s in forged)


def test_a_face_listed_twice_is_drawn_once():
    from cuneidet.forge.plan import _one_per_face

    rows = pd.DataFrame(
        {
            "collection": ["train", "saa05", "saa05"],
            "x0": [280, 282, 280],
            "y0": [250, 248, 700],
            "x1": [1096, 1090, 1096],
            "y1": [652, 650, 1100],
        }
    )
    kept = _one_per_face(rows)
    assert kept["collection"].tolist() == ["train", "saa05"]
    assert kept["y0"].tolist() == [250, 700]
