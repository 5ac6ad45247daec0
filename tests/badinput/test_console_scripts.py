"""Two cases end to end through the installed console scripts, in a fresh interpreter: the exit
code the shell sees is 2 and no traceback is printed (the other cases run in-process; the
Hydra apps' exit code 2 through their console script is covered by
tests/integration/test_cli.py::test_train_bad_input_gives_clear_message)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name(name)
    command = [str(script)] if script.is_file() else [sys.executable, "-m", _module(name)]
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR",)}
    env["WANDB_MODE"] = "disabled"
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _module(name: str) -> str:
    return "cuneidet.cli." + name.removeprefix("cuneidet-")


def test_cuneidet_data_on_a_malformed_bbox(data_copy):
    boxes = data_copy / "csdd" / "annotations" / "bbox_annotations_train_full.csv"
    boxes.write_text(boxes.read_text().replace('"[40, 40, 160, 164]"', '"[40, 40, 160]"', 1))
    result = _script("cuneidet-data", "--data-dir", str(data_copy), "check")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "bbox_annotations_train_full.csv: malformed bbox '[40, 40, 160]' in row 2" in (
        result.stderr
    )


def test_cuneidet_oracle_on_a_text_file_named_png(corpus, tmp_path):
    notes = tmp_path / "drawing.png"
    notes.write_text("not a drawing\n")
    result = _script("cuneidet-oracle", "predict", str(notes), "--ckpt", str(corpus.detector))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    assert f"cannot read {notes} as an image" in output and "give a PNG or JPEG" in output
