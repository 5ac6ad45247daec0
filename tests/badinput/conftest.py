"""Shared inputs of the bad-input corpus, built once per session (a few seconds in all).

Nothing is read from the developer's data folder: a small synthetic CSDD (3 train tablets, 1 test
tablet, line annotations, a fixture cuneiform font), tiny random-weight checkpoints of the kinds
``cuneidet-train`` writes, and their damaged or foreign variants.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.badinput.support import (
    INPUTS,
    TINY_DETECTOR,
    photo,
    save_checkpoint,
    truncated_copy,
)
from tests.fixtures_font import make_cuneiform_font
from tests.synthetic_csdd import make_synthetic_csdd


@dataclass(frozen=True)
class Corpus:
    root: Path
    data: Path  # a valid synthetic CSDD data folder (do not modify: copy it with ``data_copy``)
    detector: Path  # a sign-detector checkpoint (4 classes, tiny)
    line_net: Path  # a line-network checkpoint
    truncated: Path  # the first half of ``detector``
    foreign: Path  # a plain state dict, as released weights are (no cuneidet model config)
    good_photo: Path  # a readable 8-bit grayscale PNG photo
    fake_onnx: Path  # text named .onnx with a well-formed sidecar beside it
    lonely_onnx: Path  # an .onnx file without its sidecar


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("badinput")
    data = make_synthetic_csdd(root / "data", train_tablets=3, test_tablets=1, with_lines=True)
    make_cuneiform_font(data / "fonts" / "NotoSansCuneiform-Regular.ttf")
    detector = save_checkpoint(root / "det.ckpt", TINY_DETECTOR)
    line_net = save_checkpoint(root / "line.ckpt", ["model=line_net"])
    foreign = root / "plain.pth"
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, foreign)
    models = root / "models"
    models.mkdir()
    fake_onnx = models / "fake.onnx"
    fake_onnx.write_text("this is not an ONNX graph\n")
    sidecar = {
        "format": "cuneidet-onnx",
        "format_version": 1,
        "kind": "detector",
        "graphs": {"detector": {"file": "fake.onnx"}},
        "num_classes": 4,
        "sign_height": 128.0,
        "strides": [32, 64],
        "anchors": {"sizes": [128, 256], "aspect_ratios": [1.0], "scales": [1.0]},
    }
    (models / "fake.json").write_text(json.dumps(sidecar))
    lonely_onnx = models / "lonely.onnx"
    shutil.copyfile(fake_onnx, lonely_onnx)
    return Corpus(
        root=root,
        data=data,
        detector=detector,
        line_net=line_net,
        truncated=truncated_copy(detector, root / "trunc.ckpt"),
        foreign=foreign,
        good_photo=photo(root / "photos" / "good.png", mode="L"),
        fake_onnx=fake_onnx,
        lonely_onnx=lonely_onnx,
    )


@pytest.fixture
def data_copy(corpus: Corpus, tmp_path: Path) -> Path:
    """A private copy of the synthetic data folder (under the case's ``in/`` folder of inputs),
    for cases that damage it."""
    return Path(shutil.copytree(corpus.data, tmp_path / INPUTS / "data"))
