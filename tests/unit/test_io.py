"""Atomic writers (cuneidet.utils.io)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cuneidet.utils.io import write_json


def test_json_is_standard_with_non_finite_values_as_null(tmp_path):
    path = write_json(
        tmp_path / "figures.json",
        {
            "accuracy": math.nan,  # e.g. an assignment accuracy over no lines
            "ratios": [np.float32(np.inf), np.int64(3), (1, 2.5)],
            "array": np.array([1.0, np.nan]),
            "tensor": torch.tensor(2.0),
            "path": Path("/x"),
            "flag": np.bool_(True),
            "none": None,
        },
    )
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    assert loaded == {
        "accuracy": None,
        "ratios": [None, 3, [1, 2.5]],
        "array": [1.0, None],
        "tensor": 2.0,
        "path": "/x",
        "flag": True,
        "none": None,
    }
    assert not list(tmp_path.glob("*.tmp*")), "no temporary file is left behind"


def test_json_rejects_unknown_objects(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
