"""Output folders that cannot be written, and a disk that fills up mid-write.

A read-only folder is refused with a message that names the file and says to choose a writable
folder; a full disk with one that names the file and says to free space. Exit code 2, no
traceback, and nothing half-written: no temporary file, no partial CSV/JSON/ONNX. The disk is
filled by making :mod:`cuneidet.utils.io`'s writers fail with ENOSPC after a few bytes (see
``DiskFull``). The table of the cases is docs/bad_inputs.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cuneidet.cli.data import main as data_main
from tests.badinput.conftest import Corpus
from tests.badinput.support import (
    DiskFull,
    assert_clean,
    read_only_dir,
    run_argparse_app,
    run_hydra_app,
)

READ_ONLY_FIX = "choose a writable output folder"
FULL_FIX = "free disk space or write to another disk"


def _predict(corpus: Corpus, *extra: str) -> list[str]:
    return [
        f"ckpt_path={corpus.detector}",
        f"inputs=[{corpus.good_photo}]",
        f"paths.data_dir={corpus.data}",
        *extra,
    ]


def test_predict_output_folder_read_only(corpus, tmp_path, monkeypatch):
    locked = read_only_dir(tmp_path / "locked", monkeypatch)
    run_dir = tmp_path / "run"
    outcome = run_hydra_app("predict", _predict(corpus, f"output.csv={locked}/det.csv"), run_dir)
    outcome.assert_error(2, f"cannot write {locked}/det.csv", "Permission denied", READ_ONLY_FIX)
    assert not list(locked.iterdir())
    assert_clean(tmp_path, "detections_coco.json", "scales.csv", "predict_summary.json")


def test_predict_disk_full_while_writing_detections(corpus, tmp_path, monkeypatch):
    disk = DiskFull(monkeypatch, match="detections.csv", allow=64)
    run_dir = tmp_path / "run"
    outcome = run_hydra_app("predict", _predict(corpus), run_dir)
    outcome.assert_error(2, f"cannot write {run_dir}/detections.csv", "No space left", FULL_FIX)
    assert disk.hits  # the disk did fill up mid-write
    assert_clean(tmp_path, "detections.csv", "detections_coco.json", "predict_summary.json")


def test_export_output_folder_read_only(corpus, tmp_path, monkeypatch):
    locked = read_only_dir(tmp_path / "locked", monkeypatch)
    outcome = run_hydra_app(
        "export",
        [
            f"ckpt_path={corpus.detector}",
            f"paths.data_dir={corpus.data}",
            f"output={locked}/m.onnx",
        ],
        tmp_path / "run",
    )
    outcome.assert_error(2, f"cannot write {locked}", "Permission denied", READ_ONLY_FIX)
    assert not list(locked.iterdir())
    assert_clean(tmp_path, "*.onnx", "m.json")


def test_export_disk_full_while_writing_the_sidecar(corpus, tmp_path, monkeypatch):
    """The graphs are exported (a fast stand-in here), then the disk fills up while the JSON
    sidecar is written: neither the graph nor the sidecar may be left in place."""
    from cuneidet.deploy import export as export_module

    def fast_export(net: Any, probe: Any, path: Path, *args: Any) -> dict[str, Any]:
        path.write_bytes(b"\x08\x01" * 512)  # stands in for the ONNX graph
        return {"sha256": "0" * 64, "inputs": ["images"], "outputs": ["loc", "probs"]}

    monkeypatch.setattr(export_module, "_export_graph", fast_export)
    disk = DiskFull(monkeypatch, match="sidecar.json", allow=64)
    out = tmp_path / "out"
    outcome = run_hydra_app(
        "export",
        [f"ckpt_path={corpus.detector}", f"paths.data_dir={corpus.data}", f"output={out}/m.onnx"],
        tmp_path / "run",
    )
    outcome.assert_error(2, "sidecar.json", "No space left", FULL_FIX)
    assert disk.hits
    assert not list(out.iterdir()), list(out.iterdir())  # no graph, sidecar or staging folder
    assert_clean(tmp_path, "*.onnx", "m.json")


def test_data_check_json_into_read_only_folder(corpus, tmp_path, monkeypatch):
    locked = read_only_dir(tmp_path / "locked", monkeypatch)
    target = locked / "summary.json"
    outcome = run_argparse_app(
        data_main, ["--data-dir", str(corpus.data), "check", "--json", str(target)]
    )
    outcome.assert_error(2, f"cannot write {target}", "Permission denied", READ_ONLY_FIX)
    assert not list(locked.iterdir())


def test_data_check_json_disk_full(corpus, tmp_path, monkeypatch):
    disk = DiskFull(monkeypatch, match="summary.json", allow=64)
    target = tmp_path / "out" / "summary.json"
    outcome = run_argparse_app(
        data_main, ["--data-dir", str(corpus.data), "check", "--json", str(target)]
    )
    outcome.assert_error(2, f"cannot write {target}", "No space left", FULL_FIX)
    assert disk.hits
    assert_clean(tmp_path, "summary.json")


def test_forge_dir_read_only(corpus, tmp_path, monkeypatch):
    locked = read_only_dir(tmp_path / "locked", monkeypatch)
    outcome = run_hydra_app(
        "forge",
        [
            f"paths.data_dir={corpus.data}",
            f"paths.forge_dir={locked}",
            "tablets=[TRAIN000]",
            "workers=1",
            "progress=false",
        ],
        tmp_path / "run",
    )
    outcome.assert_error(2, f"cannot write {locked}", "Permission denied", READ_ONLY_FIX)
    assert not list(locked.iterdir())
    assert_clean(tmp_path, "forge_report.json")
