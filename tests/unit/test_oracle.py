"""Oracle-bone characters: glyph preprocessing, the JiaGuWen index and its honest split,
calibration metrics, model loading checks, and the draw page's endpoints."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from cuneidet.classify.drawings import CLAY_GREY, SHADOW_GREY, drawing_crop
from cuneidet.data.glyphs import EmptyGlyphError, fit_ink, glyph_input, ink_map
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError, ModelFileError
from cuneidet.oracle.data import JiaguwenDataModule, charset, read_index, split_index
from cuneidet.oracle.module import expected_calibration_error, fit_temperature, topk_accuracy
from cuneidet.oracle.predict import load_oracle_model
from tests.serve_support import ORACLE_CHARSET, add_user, login, make_app

#: character → number of images of the synthetic JiaGuWen folder
COUNTS = {"一": 1, "二": 2, "三": 3, "上": 4, "下": 1, "中": 5}


def _glyph(seed: int, size: int = 50) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0, x1, y1 = rng.integers(5, size - 5, 4)
        draw.line([(x0, y0), (x1, y1)], fill="black", width=3)
    return image


def make_jiaguwen(root, counts=COUNTS):
    """A JiaGuWen folder under ``root/jiaguwen`` (one stroke pattern per character)."""
    folder = root / "jiaguwen"
    (folder / "i").mkdir(parents=True)
    rows = []
    for index, (name, count) in enumerate(counts.items()):
        for copy in range(count):
            file = f"{index:03d}{copy}.jpg"
            _glyph(index).rotate(copy * 4, fillcolor="white").save(folder / "i" / file)
            rows.append({"image": file, "name": name})
    (folder / "index.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return folder


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- glyphs


def test_glyph_input_binarises_crops_and_centres_the_ink():
    canvas = np.full((300, 400), 255, np.uint8)
    canvas[40:100, 300:330] = 10  # a small stroke far off-centre
    prepared = glyph_input(canvas, 64)
    assert prepared.shape == (64, 64) and prepared.dtype == np.uint8
    rows, cols = np.nonzero(prepared < 128)
    assert (
        abs((rows.min() + rows.max()) / 2 - 31.5) < 2
        and abs((cols.min() + cols.max()) / 2 - 31.5) < 2
    )
    assert rows.max() - rows.min() > 40  # the longer side fills the square less the margin
    with pytest.raises(EmptyGlyphError, match="draw a character first"):
        glyph_input(np.full((100, 100), 255, np.uint8))
    transparent = np.zeros((50, 50, 4), np.uint8)  # an empty canvas exported with alpha
    with pytest.raises(EmptyGlyphError):
        glyph_input(transparent)
    assert ink_map(np.full((9, 9), 128, np.uint8)).sum() == 0


def test_cuneiform_drawings_get_the_grey_levels_of_photographed_crops():
    canvas = np.full((200, 200), 255, np.uint8)
    canvas[50:150, 90:110] = 0
    crop = drawing_crop(canvas, 64, 1.3)
    assert crop.shape == (64, 64)
    assert crop.max() == round(CLAY_GREY) and crop.min() == round(SHADOW_GREY)
    assert fit_ink(np.pad(np.ones((10, 10)), 20), 32, margin=0.15)[0].max() == 0  # a margin


# --------------------------------------------------------------------------- data


def test_split_never_tests_on_a_training_image(tmp_path):
    entries = read_index(make_jiaguwen(tmp_path))
    split = split_index(entries, seed=3)
    assert split == split_index(entries, seed=3)
    names = {key: [entries[i].name for i in indices] for key, indices in split.items()}
    assert sorted(names["test"]) == sorted(n for n, c in COUNTS.items() if c >= 2)
    assert sorted(names["val"]) == sorted(n for n, c in COUNTS.items() if c >= 3)
    assert set(split["test"]).isdisjoint(split["train"]) and set(split["val"]).isdisjoint(
        split["train"]
    )
    assert set(names["train"]) == set(COUNTS)  # every character trains, singletons included
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == sum(COUNTS.values())
    assert charset(entries) == sorted(COUNTS)


def test_the_datamodule_serves_all_three_splits(tmp_path):
    make_jiaguwen(tmp_path)
    module = JiaguwenDataModule(
        data_dir=str(tmp_path), num_classes=6, batch_size=4, num_workers=0, samples_per_epoch=8
    )
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["images"].shape == (4, 1, 64, 64) and batch["images"].min() >= -0.5
    held_out, train = module.test_dataloader()
    assert len(held_out.dataset) == 4 and len(train.dataset) == len(module.split["train"])
    assert module.split_summary()["single_image_characters"] == 2
    with pytest.raises(ConfigError, match=r"model\.net\.num_classes=6"):
        JiaguwenDataModule(data_dir=str(tmp_path), num_classes=793).setup()


def test_bad_jiaguwen_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="no JiaGuWen folder"):
        read_index(tmp_path / "missing")
    folder = make_jiaguwen(tmp_path)
    (folder / "i" / "0000.jpg").unlink()
    with pytest.raises(DataNotFoundError, match=r"names 0000\.jpg, which is not in"):
        read_index(folder)
    (folder / "index.json").write_text('[{"image": "x.jpg"}]')
    with pytest.raises(DataFormatError, match="lacks image or name"):
        read_index(folder)
    (folder / "index.json").write_text("{oops")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_index(folder)
    (folder / "index.json").write_text('[{"image": "../x.jpg", "name": "a"}]')
    with pytest.raises(DataFormatError, match="names a path"):
        read_index(folder)


# --------------------------------------------------------------------------- metrics


def test_calibration_metrics():
    labels = torch.tensor([0, 1, 2, 3])
    logits = torch.eye(4) * 10
    assert topk_accuracy(logits, labels, (1, 2)) == {1: 1.0, 2: 1.0}
    probs = torch.full((4, 4), 0.1)
    probs[torch.arange(4), torch.tensor([0, 1, 2, 0])] = 0.7
    ece, table = expected_calibration_error(probs, labels)
    assert ece == pytest.approx(0.05) and table[0]["count"] == 4  # 75 % right at 70 %
    torch.manual_seed(0)
    true = torch.randn(4000, 5) * 2
    drawn = torch.distributions.Categorical(logits=true).sample()
    assert fit_temperature(true * 3, drawn) == pytest.approx(3.0, rel=0.15)


def test_only_oracle_checkpoints_of_the_right_character_set_load(tmp_path):
    with pytest.raises(DataNotFoundError, match="experiment=oracle_bone"):
        load_oracle_model(tmp_path / "none.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "cuneidet": {"model_config": {"x": 1}}}, foreign)
    with pytest.raises(ModelFileError, match="not an oracle-bone model"):
        load_oracle_model(foreign)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable checkpoint"):
        load_oracle_model(broken)


# --------------------------------------------------------------------------- draw page


def test_the_draw_endpoints_rank_drawings_and_refuse_bad_ones(tmp_path):
    app = make_app(tmp_path)
    add_user(app, "alice")
    drawing = Image.new("RGBA", (300, 300), (255, 255, 255, 0))
    ImageDraw.Draw(drawing).line([(40, 40), (260, 260)], fill=(0, 0, 0, 255), width=12)
    with TestClient(app) as client:
        assert (
            client.post("/api/draw/oracle", files={"image": ("d.png", _png(drawing))}).status_code
            == 401
        )
        login(client, "alice")
        modes = {m["mode"]: m for m in client.get("/api/draw/modes").json()}
        assert modes["oracle"]["ready"] and modes["oracle"]["classes"] == len(ORACLE_CHARSET)
        answer = client.post("/api/draw/oracle", files={"image": ("d.png", _png(drawing))}).json()
        top = answer["top"]
        assert [r["rank"] for r in top] == list(range(1, 11)) and top[0]["name"] in ORACLE_CHARSET
        assert sum(r["probability"] for r in top) <= 1.0 + 1e-6
        probabilities = [r["probability"] for r in top]
        assert probabilities == sorted(probabilities, reverse=True)
        seen = Image.open(io.BytesIO(base64.b64decode(answer["input"].split(",")[1])))
        assert seen.size == (64, 64)
        sign = client.post("/api/draw/cuneiform", files={"image": ("d.png", _png(drawing))}).json()
        assert sign["top"][0]["mzl"] > 100 and sign["top"][0]["glyph"]
        empty = Image.new("RGB", (300, 300), "white")
        refused = client.post("/api/draw/oracle", files={"image": ("d.png", _png(empty))})
        assert refused.status_code == 400 and "draw a character first" in refused.json()["detail"]
        text = client.post("/api/draw/oracle", files={"image": ("d.png", b"not an image")})
        assert text.status_code == 415
        big = client.post(
            "/api/draw/oracle", files={"image": ("d.png", b"\x89PNG" + b"0" * 3_000_000)}
        )
        assert big.status_code == 413
        unknown = client.post("/api/draw/hieratic", files={"image": ("d.png", _png(drawing))})
        assert unknown.status_code == 404


def test_the_oracle_mode_says_why_it_is_not_ready(tmp_path):
    def missing():
        return load_oracle_model(tmp_path / "none.ckpt")

    app = make_app(tmp_path, oracle_loader=missing)
    add_user(app, "alice")
    drawing = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(drawing).line([(10, 10), (90, 90)], fill="black", width=6)
    with TestClient(app) as client:
        login(client, "alice")
        answer = client.post("/api/draw/oracle", files={"image": ("d.png", _png(drawing))})
        assert answer.status_code == 503 and "experiment=oracle_bone" in answer.json()["detail"]
        modes = {m["mode"]: m for m in client.get("/api/draw/modes").json()}
        assert (
            modes["oracle"]["ready"] is False and "oracle model failed" in modes["oracle"]["error"]
        )
