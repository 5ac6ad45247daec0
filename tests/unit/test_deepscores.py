"""DeepScoresV2 adapter: label mapping, annotation sets, bad input, counted skips, datamodule."""

import copy
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cuneidet.data.deepscores import DeepScoresDataModule, read_deepscores, split_pages
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "deepscores_v2_sample"

# deepscores ids 1, 2, 10 (a string sort would put "10" before "2"); muscima++ ids 11, 12
CATEGORIES = {
    "10": {"name": "clefG", "annotation_set": "deepscores", "color": 3},
    "2": {"name": "stem", "annotation_set": "deepscores", "color": 2},
    "1": {"name": "brace", "annotation_set": "deepscores", "color": 1},
    "12": {"name": "m_stem", "annotation_set": "muscima++", "color": 2},
    "11": {"name": "m_brace", "annotation_set": "muscima++", "color": 1},
}
ANNOTATIONS = {
    "100": {"a_bbox": [10, 10, 50, 40], "cat_id": ["2", "12"]},
    "101": {"a_bbox": [60, 20, 75, 120], "cat_id": ["10", None]},
    "102": {"a_bbox": [100, 100, 180, 150], "cat_id": ["11", "1"]},  # order is not trusted
    "103": {"a_bbox": [150, 10, 155, 16], "cat_id": ["2", "12"]},  # 5x6 px: below 8
    "200": {"a_bbox": [20, 30, 60, 70], "cat_id": ["10", "11"]},
}
PAGES = [("a.png", ["100", "101", "102", "103"]), ("b.png", ["200"])]
WIDTH, HEIGHT = 200, 160
PAGE_A_BOXES = [ANNOTATIONS[k]["a_bbox"] for k in PAGES[0][1]]


def make_set(folder: Path, pages=PAGES, edit=None, name="ds.json") -> Path:
    """A DeepScores OBB JSON with white PNG pages (black boxes) under ``folder/images``."""
    annotations = copy.deepcopy(ANNOTATIONS)
    for key, ann in annotations.items():
        ann.update(o_bbox=[0.0] * 8, area=1, img_id="1" if key < "200" else "2", comments="")
    data = {
        "info": {"description": "synthetic"},
        "annotation_sets": ["deepscores", "muscima++"],
        "categories": copy.deepcopy(CATEGORIES),
        "images": [
            {"id": i, "filename": f, "width": WIDTH, "height": HEIGHT, "ann_ids": list(ids)}
            for i, (f, ids) in enumerate(pages, start=1)
        ],
        "annotations": annotations,
    }
    if edit:
        edit(data)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for file_name, ids in pages:
        page = np.full((HEIGHT, WIDTH), 255, np.uint8)
        for ann_id in ids:
            x0, y0, x1, y1 = ANNOTATIONS[ann_id]["a_bbox"]
            page[y0:y1, x0:x1] = 0
        cv2.imwrite(str(folder / "images" / file_name), page)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def _read(tmp_path, annotation_set="deepscores", **kwargs):
    return read_deepscores(make_set(tmp_path, **kwargs), tmp_path / "images", annotation_set)


def test_labels_follow_category_ids_and_boxes_are_a_bbox(tmp_path):
    found = _read(tmp_path)
    assert found.class_names == {1: "brace", 2: "stem", 3: "clefG"}
    assert found.category_ids == {1: "1", 2: "2", 3: "10"}
    a, b = found.pages
    assert (a.file_name, a.key, a.width, a.height) == ("a.png", "a", WIDTH, HEIGHT)
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    np.testing.assert_array_equal(a.boxes, PAGE_A_BOXES)
    assert a.labels.tolist() == [2, 3, 1, 2] and b.labels.tolist() == [3]
    assert found.num_annotations == 5 and found.skipped == {}


def test_the_muscima_set_gives_its_own_labels_and_counts_null_entries(tmp_path):
    found = _read(tmp_path, "muscima++")
    assert found.class_names == {1: "m_brace", 2: "m_stem"}
    assert found.category_ids == {1: "11", 2: "12"}
    assert found.pages[0].labels.tolist() == [2, 1, 2]  # 101 has no muscima++ category
    assert found.skipped == {"no category in muscima++": 1}


def _drop(key):
    return lambda data: data.pop(key)


def _set_ann(field, value):
    return lambda data: data["annotations"]["101"].__setitem__(field, value)


def _set_page(field, value):
    def edit(data):
        if value is None:
            data["images"][0].pop(field)
        else:
            data["images"][0][field] = value

    return edit


def _del_ann(field):
    return lambda data: data["annotations"]["101"].pop(field)


@pytest.mark.parametrize(
    ("edit", "error", "words"),
    [
        (_drop("annotations"), DataFormatError, ["'annotations'", "ds.json"]),
        (_drop("categories"), DataFormatError, ["'categories'", "ds.json"]),
        (_del_ann("a_bbox"), DataFormatError, ["annotation 101", "a_bbox", "ds.json"]),
        (_del_ann("cat_id"), DataFormatError, ["annotation 101", "cat_id", "ds.json"]),
        (_set_ann("cat_id", []), DataFormatError, ["annotation 101", "cat_id"]),
        (_set_ann("a_bbox", [1, 2, 3]), DataFormatError, ["annotation 101", "a_bbox"]),
        (_set_ann("a_bbox", [10, "x", 20, 30]), DataFormatError, ["annotation 101", "a_bbox"]),
        (_set_ann("a_bbox", [10, 10, float("inf"), 40]), DataFormatError, ["annotation 101"]),
        (_set_page("ann_ids", None), DataFormatError, ["images[0]", "ann_ids", "ds.json"]),
        (_set_page("width", -5), DataFormatError, ["images[0]", "bad size"]),
        (_set_page("filename", "b.png"), DataFormatError, ["b.png", "listed twice"]),
    ],
)
def test_malformed_files_and_annotations_are_clear_errors(tmp_path, edit, error, words):
    with pytest.raises(error) as caught:
        _read(tmp_path, edit=edit)
    assert type(caught.value) is error
    for word in words:
        assert word in str(caught.value)


def test_missing_or_invalid_json_and_unknown_set_are_clear_errors(tmp_path):
    images = tmp_path / "images"
    with pytest.raises(DataNotFoundError, match=r"missing\.json.*data\.data_dir"):
        read_deepscores(tmp_path / "missing.json", images)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataFormatError, match=r"broken\.json is not valid JSON"):
        read_deepscores(broken, images)
    with pytest.raises(ConfigError, match=r"ds\.json.*data\.annotation_set='foo'.*annotation_sets"):
        _read(tmp_path, "foo")


def test_empty_boxes_are_counted_skips(tmp_path):
    def edit(data):
        data["annotations"]["101"]["a_bbox"] = [10, 10, 10, 40]  # zero width
        data["annotations"]["102"]["a_bbox"] = [10, 50, 20, 40]  # y1 < y0

    found = read_deepscores(make_set(tmp_path, edit=edit), tmp_path / "images")
    assert found.skipped == {"empty a_bbox (x1 <= x0 or y1 <= y0)": 2}
    assert found.num_annotations == 3


def test_unknown_categories_dangling_ids_and_missing_pages_are_counted(tmp_path, caplog):
    def edit(data):
        data["annotations"]["101"]["cat_id"] = ["99", None]
        data["images"][0]["ann_ids"].append("999")

    path = make_set(tmp_path, edit=edit)
    (tmp_path / "images" / "b.png").unlink()
    with caplog.at_level(logging.WARNING):
        found = read_deepscores(path, tmp_path / "images")
    assert found.skipped == {
        "unknown category id": 1,
        "ann_ids without annotation": 1,
        "page image missing": 1,
    }
    assert [p.file_name for p in found.pages] == ["a.png"]
    assert found.pages[0].labels.tolist() == [2, 1, 2]
    assert "'99'" in caplog.text and "b.png" in caplog.text
    for page in ("a.png", "b.png"):
        (tmp_path / "images" / page).unlink(missing_ok=True)
    with pytest.raises(DataNotFoundError, match=r"ds\.json: none of its 2 page images"):
        read_deepscores(path, tmp_path / "images")


def _module(tmp_path, pages=PAGES, **kwargs):
    make_set(tmp_path, pages=pages)
    settings = dict(
        data_dir=str(tmp_path),
        train_json="ds.json",
        test_json="ds.json",
        num_classes=4,
        tile_size=128,
        input_size=64,
        tile_offset=0,
        tile_step_x=64,
        tile_step_y=64,
        batch_size=3,
        num_workers=0,
        progress=False,
    )
    return DeepScoresDataModule(**{**settings, **kwargs})


def test_datamodule_scales_pages_skips_small_objects_and_batches(tmp_path):
    dm = _module(tmp_path, scale=0.5, val_fraction=0.5)
    dm.setup("fit")
    assert len(dm.train_samples) == len(dm.val_samples) == 1
    assert {s.key for s in dm.train_samples + dm.val_samples} == {"a", "b"}
    assert dm.skipped == {"smaller than data.min_object_size": 1}  # 103: 2.5x3 px after scale
    a = next(s for s in dm.train_samples + dm.val_samples if s.key == "a")
    assert a.image.shape == (HEIGHT // 2, WIDTH // 2) and a.image.dtype == np.uint8
    np.testing.assert_allclose(a.boxes, np.array(PAGE_A_BOXES[:3], np.float32) / 2)
    assert a.meta["bbox"] == (0.0, 0.0, WIDTH, HEIGHT) and a.meta["scale"] == 0.5
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[1:] == (1, 64, 64) and batch["images"].dtype == torch.float32
    for target in batch["targets"]:
        boxes = target["boxes"]
        assert ((boxes >= 0) & (boxes <= 64)).all()
        assert target["labels"].dtype == torch.int64 and (target["labels"] >= 1).all()
    val = next(iter(dm.val_dataloader()))
    assert val["images"].shape == (1, 1, HEIGHT // 2, WIDTH // 2)
    assert dm.hparams.train_sets == ["ds"] and dm.class_names()[3] == "clefG"


def test_one_page_validates_and_tests_on_itself(tmp_path, caplog):
    dm = _module(tmp_path, pages=PAGES[:1])
    with caplog.at_level(logging.INFO, logger="cuneidet.data.deepscores"):
        dm.setup("fit")
        dm.setup("test")
    assert dm.train_samples == dm.val_samples == dm.test_samples
    assert dm.test_samples[0] is dm.train_samples[0]  # the page is loaded once
    assert "smoke-test" in caplog.text and "testing on the training pages" in caplog.text
    assert len(dm.train_samples[0].labels) == 3  # 103 is smaller than 8 px
    item = next(iter(dm.test_dataloader()))
    assert item["images"].shape == (1, 1, HEIGHT, WIDTH)
    assert float(item["images"].max()) == 0.5  # white paper, the project's normalisation


def test_class_agnostic_and_the_number_of_classes(tmp_path):
    dm = _module(tmp_path, class_agnostic=True, num_classes=2)
    dm.setup("fit")
    labels = np.concatenate([s.labels for s in dm.train_samples + dm.val_samples])
    assert set(labels.tolist()) == {1} and dm.class_names() == {1: "object"}
    with pytest.raises(ConfigError, match=r"model\.detector\.num_classes=2"):
        _module(tmp_path, class_agnostic=True, num_classes=4)
    with pytest.raises(
        ConfigError, match=r"3 deepscores categories.*model\.detector\.num_classes=4"
    ):
        _module(tmp_path, num_classes=3).setup("fit")


def test_page_size_mismatch_and_missing_folder_are_errors(tmp_path):
    def edit(data):
        data["images"][0]["width"] = WIDTH + 1

    make_set(tmp_path, edit=edit)
    dm = DeepScoresDataModule(data_dir=str(tmp_path), train_json="ds.json", num_classes=4)
    with pytest.raises(DataFormatError, match=r"a\.png is 200x160 px but ds\.json says 201x160"):
        dm.setup("fit")
    with pytest.raises(DataNotFoundError, match=r"data\.data_dir"):
        DeepScoresDataModule(data_dir=str(tmp_path / "nowhere")).setup("fit")


def test_split_pages_is_seeded_and_keeps_a_training_page():
    pages = list(range(10))
    train, val = split_pages(pages, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == pages
    assert split_pages(pages, 0.2, seed=3) == (train, val)
    assert len(split_pages(pages[:2], 0.9)[0]) == 1
    with pytest.raises(ConfigError, match="val_fraction"):
        split_pages(pages, 1.0)


def test_test_records_map_back_to_page_pixels(tmp_path):
    from cuneidet.eval.evaluate import test_detections_frame

    dm = _module(tmp_path, pages=PAGES[:1], scale=0.5)
    dm.setup("test")
    pred = {
        "boxes": torch.tensor([[5.0, 5.0, 25.0, 20.0]]),
        "labels": torch.tensor([2]),
        "scores": torch.tensor([0.9]),
    }
    frame = test_detections_frame([{"index": 0, "pred": pred}], dm.test_samples)
    assert frame[["x1", "y1", "x2", "y2"]].values.tolist() == [[10.0, 10.0, 50.0, 40.0]]
    assert frame["imageName"].tolist() == ["a"]


def test_the_config_composes_and_builds():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cuneidet.config import config_dir
    from cuneidet.utils.instantiate import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=deepscores"])
    assert list(cfg.data.train_sets) == ["deepscores_v2_sample.json"]
    assert cfg.data.num_classes == 137 and cfg.data.min_object_size == 8
    dm = instantiate(cfg.data, num_classes=137)
    assert isinstance(dm, DeepScoresDataModule) and dm.hparams.tile_size == 600


def test_the_real_sample():
    """The one-page DeepScoresV2 sample: JSON only (the 10 MP page is not decoded)."""
    if not (SAMPLE / "deepscores_v2_sample.json").is_file():
        pytest.skip(f"no DeepScoresV2 sample at {SAMPLE}")
    from PIL import Image

    found = read_deepscores(SAMPLE / "deepscores_v2_sample.json", SAMPLE / "images")
    assert found.num_annotations == 547 and found.skipped == {}
    assert len(found.class_names) == 136 and found.class_names[1] == "brace"
    (page,) = found.pages
    assert (page.width, page.height) == (2707, 3828)
    with Image.open(page.path) as image:  # the header only
        assert image.size == (2707, 3828)
