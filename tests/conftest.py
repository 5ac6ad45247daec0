"""Test-wide settings: W&B disabled, no dependence on the developer's data folder."""

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def onnx_exports(tmp_path_factory):
    """A tiny one-stage detector and two-stage recogniser exported once per test session:
    ``(folder, one, two)`` with ``folder/one.onnx`` (classes SIGN1…SIGN5) and ``two.onnx``."""
    from cuneidet.deploy.export import export_onnx
    from tests.tiny_models import one_stage_detector, two_stage_recogniser

    folder = tmp_path_factory.mktemp("onnx")
    one, two = one_stage_detector(), two_stage_recogniser()
    classes = {c: {"name": f"SIGN{c}", "mzl": 100 + c, "glyph": ""} for c in range(1, 6)}
    export_onnx(one, folder / "one.onnx", inference={"score_thresh": 0.2}, classes=classes)
    export_onnx(two, folder / "two.onnx", inference={"score_thresh": 0.01})
    return folder, one, two
