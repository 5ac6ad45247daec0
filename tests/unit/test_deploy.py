"""ONNX export and the ONNX Runtime detectors: parity with PyTorch, sidecar checks, bad files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cuneidet.deploy.export import export_onnx
from cuneidet.deploy.runtime import (
    OnnxSignDetector,
    load_inference_model,
    load_onnx_detector,
)
from cuneidet.deploy.sidecar import read_sidecar, sidecar_path
from cuneidet.errors import ConfigError, DataNotFoundError, ModelFileError
from cuneidet.inference.predict import detect_image
from cuneidet.models.necks import PaperFPN
from cuneidet.models.watershed import WatershedDetector, WatershedHead
from tests.tiny_models import one_stage_detector

#: ONNX Runtime against PyTorch, float32: raw outputs and box coordinates (pixels)
TOLERANCE = 1e-4
BOX_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def exports(onnx_exports):
    """(folder, one-stage detector, two-stage recogniser) with ``one.onnx`` and ``two.onnx``
    exported once per session (``tests/conftest.py``)."""
    return onnx_exports


def _image(height: int = 150, width: int = 230) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.rand((1, 1, height, width), generator=generator) - 0.5


def _rows(dets: dict) -> torch.Tensor:
    """Detections as [label, score, x1, y1, x2, y2] rows in a canonical order (ties in score
    may come out of NMS in either order)."""
    rows = torch.cat(
        [dets["labels"][:, None].float(), dets["scores"][:, None], dets["boxes"]], dim=1
    )
    keys = np.round(rows.numpy().astype(np.float64), 2)
    return rows[np.lexsort(keys.T[::-1].copy())]


def _same(a: dict, b: dict) -> None:
    got, expected = _rows(a), _rows(b)
    assert got.shape == expected.shape
    assert got[:, 0].tolist() == expected[:, 0].tolist()
    assert torch.allclose(got[:, 1], expected[:, 1], atol=TOLERANCE)
    assert torch.allclose(got[:, 2:], expected[:, 2:], atol=BOX_TOLERANCE)


def test_export_writes_graphs_and_a_complete_sidecar(exports):
    folder, _, _ = exports
    one = read_sidecar(folder / "one.onnx")
    assert one["kind"] == "detector" and one["num_classes"] == 6
    assert one["classes"]["3"] == {"name": "SIGN3", "mzl": 103, "glyph": ""}
    assert one["anchors"] == {"sizes": [32.0, 64.0], "aspect_ratios": [1.0, 2.0], "scales": [1.0]}
    assert one["graphs"]["detector"]["opset"] >= 18
    assert one["graphs"]["detector"]["probe_max_abs_diff"] < 1e-3
    assert one["normalisation"]["add"] == -0.5 and one["inference"] == {"score_thresh": 0.2}
    two = read_sidecar(folder / "two.json")
    assert two["kind"] == "two_stage" and two["sign_height"] == 64.0
    assert two["recogniser"]["top_k"] == 3 and two["recogniser"]["crop_size"] == 32
    assert (folder / "two.classifier.onnx").is_file()
    assert not list(folder.glob(".export-*"))  # the staging folder is gone


@pytest.mark.parametrize("size", [(150, 230), (97, 301)])
def test_onnx_runtime_matches_pytorch_for_any_image_size(exports, size):
    folder, one, two = exports
    image = _image(*size)
    onnx_one, _ = load_onnx_detector(folder / "one.onnx", threads=1)
    with torch.no_grad():
        loc, probs = one.raw_outputs(image)
    got_loc, got_probs = onnx_one.raw_outputs(image)
    assert torch.allclose(got_loc, loc, atol=TOLERANCE)
    assert torch.allclose(got_probs, probs, atol=TOLERANCE)
    _same(onnx_one.detect(image, score_thresh=0.17)[0], one.detect(image, score_thresh=0.17)[0])
    onnx_two, _ = load_onnx_detector(folder / "two.onnx", threads=1)
    expected = two.detect(image, score_thresh=0.0)[0]
    got = onnx_two.detect(image, score_thresh=0.0)[0]
    assert len(expected["labels"]) > 30  # the test really compares boxes
    _same(got, expected)


def test_detect_image_takes_the_onnx_detector_and_its_working_scale(exports):
    folder, _, two = exports
    onnx_two, _ = load_onnx_detector(folder / "two.onnx", threads=1)
    assert onnx_two.sign_height == 64.0 and onnx_two.strides == [8, 16, 32]
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (180, 260), dtype=np.uint8))
    _same(
        detect_image(onnx_two, photo, score_thresh=0.0), detect_image(two, photo, score_thresh=0.0)
    )


def test_runtime_overrides_and_inference_model(exports):
    folder, _, _ = exports
    model = load_inference_model(
        "onnx",
        model=folder / "two.onnx",
        threads=1,
        recogniser={"top_k": 2},
        inference={"score_thresh": 0.3, "max_detections": 0},
    )
    assert model.detector.top_k == 2 and model.num_classes == 7
    assert model.inference["score_thresh"] == 0.3 and model.inference["max_detections"] is None
    one = load_inference_model("onnx", model=folder / "one.onnx", threads=1)
    assert isinstance(one.detector, OnnxSignDetector) and one.class_names[2] == "SIGN2"
    with pytest.raises(ConfigError, match=r"recogniser\.colour is unknown"):
        load_onnx_detector(folder / "two.onnx", recogniser={"colour": 1})
    zero = load_inference_model(
        "onnx", model=folder / "two.onnx", recogniser={"loc_score_thresh": 0.0}
    )
    assert zero.detector.loc_score_thresh == 0.0  # a zero is a setting, not "keep"
    with pytest.raises(ConfigError, match="two-stage"):
        load_onnx_detector(folder / "one.onnx", recogniser={"top_k": 2})
    with pytest.raises(ConfigError, match=r"model_file=<file\.onnx>"):
        load_inference_model("onnx")
    with pytest.raises(ConfigError, match="ckpt_path"):
        load_inference_model("torch")
    with pytest.raises(ConfigError, match="runtime=tensorflow"):
        load_inference_model("tensorflow")


def _copy(folder, tmp_path, stem):
    for path in folder.glob(f"{stem}.*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / f"{stem}.onnx"


def test_a_corrupt_model_file_is_refused_with_the_file_named(exports, tmp_path):
    folder, _, _ = exports
    model = _copy(folder, tmp_path, "one")
    model.write_bytes(b"this is not an onnx model")
    meta = json.loads(sidecar_path(model).read_text())
    meta["graphs"]["detector"]["sha256"] = None  # only the content check is left
    sidecar_path(model).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"one\.onnx is not a loadable ONNX model"):
        load_onnx_detector(model)


def test_a_graph_replaced_behind_its_sidecar_is_refused(exports, tmp_path):
    folder, _, _ = exports
    model = _copy(folder, tmp_path, "one")
    shutil.copy(folder / "two.onnx", model)  # another model's graph under this name
    with pytest.raises(ModelFileError, match="SHA-256 differs"):
        load_onnx_detector(model)
    meta = json.loads(sidecar_path(model).read_text())
    meta["graphs"]["detector"]["sha256"] = None
    sidecar_path(model).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="outputs 2 classes but its sidecar says 6"):
        load_onnx_detector(model)


def test_missing_or_foreign_sidecars_are_refused(exports, tmp_path):
    folder, _, _ = exports
    model = _copy(folder, tmp_path, "one")
    sidecar_path(model).write_text('{"format": "something-else"}')
    with pytest.raises(ModelFileError, match="not a cuneidet model sidecar"):
        load_onnx_detector(model)
    sidecar_path(model).write_text("{not json")
    with pytest.raises(ModelFileError, match="not a JSON sidecar"):
        load_onnx_detector(model)
    sidecar_path(model).unlink()
    with pytest.raises(DataNotFoundError, match="cuneidet-export"):
        load_onnx_detector(model)
    two = _copy(folder, tmp_path, "two")
    (tmp_path / "two.classifier.onnx").unlink()
    with pytest.raises(DataNotFoundError, match="classifier graph"):
        load_onnx_detector(two)


def test_export_refuses_other_models_and_names(tmp_path):
    with pytest.raises(ConfigError, match=r"must end in \.onnx"):
        export_onnx(one_stage_detector(), tmp_path / "model.pt")
    with pytest.raises(ConfigError, match="cannot export a Linear"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "model.onnx")  # type: ignore[arg-type]
    watershed = WatershedDetector(PaperFPN(out_channels=16), WatershedHead(channels=16), 3)
    with pytest.raises(ConfigError, match="watershed head runs from its checkpoint"):
        export_onnx(watershed, tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())
