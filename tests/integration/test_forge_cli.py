"""cuneidet-forge end to end, and sim-to-real training wiring on a synthetic CSDD."""

import json

import pandas as pd
from PIL import Image

from tests.fixtures_csdd import make_tiny_csdd
from tests.fixtures_font import make_cuneiform_font
from tests.integration.test_cli import FAST, run_app
from tests.synthetic_csdd import make_synthetic_csdd


def _with_font(data):
    make_cuneiform_font(data / "fonts" / "NotoSansCuneiform-Regular.ttf")
    return data


def test_forge_renders_caches_and_draws_a_sheet(tmp_path):
    data = _with_font(make_tiny_csdd(tmp_path / "data"))
    forge_dir = tmp_path / "forge"
    common = [f"data_dir={data}", f"forge.forge_dir={forge_dir}", "progress=false"]
    run_app(
        "forge",
        *common,
        "collections=[saa01]",
        "box_sets=[train_full]",
        "workers=2",
        f"hydra.run.dir={tmp_path / 'run1'}",
    )
    report = json.loads((tmp_path / "run1" / "forge_report.json").read_text())
    assert report["rendered"] == 5 and report["failed"] == 0
    variant = next(forge_dir.iterdir())
    images = sorted(p.stem for p in (variant / "images").glob("*.jpg"))
    assert images == ["TAB001", "TAB002", "W001", "W002", "W003"]
    assert images == sorted(p.stem for p in (variant / "truth").glob("*.csv"))
    truth = pd.read_csv(variant / "truth" / "W001.csv")
    assert {"bbox", "relative_bbox", "line_idx", "pos_idx", "status"} <= set(truth.columns)
    run_app("forge", *common, "collections=[saa01]", f"hydra.run.dir={tmp_path / 'run2'}")
    again = json.loads((tmp_path / "run2" / "forge_report.json").read_text())
    assert again["rendered"] == 0 and again["cached"] == 3

    sheet = tmp_path / "sheet.png"
    run_app(
        "forge",
        *common,
        "action=sheet",
        f"sheet.out={sheet}",
        "sheet.views=2",
        "sheet.sets=[train_full]",
        f"hydra.run.dir={tmp_path / 'run3'}",
    )
    assert Image.open(sheet).size[0] > 100

    bad = run_app(
        "forge", *common, "tablets=[NOPE]", f"hydra.run.dir={tmp_path / 'run4'}", check=False
    )
    assert bad.returncode == 2 and "Unknown tablets" in bad.stderr + bad.stdout


def test_forge_pretraining_then_real_finetuning(tmp_path):
    data = _with_font(make_synthetic_csdd(tmp_path / "data", train_tablets=4, test_tablets=1))
    forge_run = tmp_path / "forge_only"
    common = [
        f"paths.data_dir={data}",
        f"paths.forge_dir={tmp_path / 'forge'}",
        "trainer.max_epochs=1",
        "data.val_fraction=0.25",
        "report.num_images=0",
        *FAST,
    ]
    run_app("train", "experiment=forge_only", f"hydra.run.dir={forge_run}", *common)
    summary = json.loads((forge_run / "summary.json").read_text())
    assert summary["image_source"] == "forge" and summary["test_map"] is not None
    assert list((tmp_path / "forge").glob("*/images/TRAIN000.jpg"))
    assert not list((tmp_path / "forge").glob("*/images/TEST*.jpg")), "tests use real photos"

    best = forge_run / "checkpoints" / "last.ckpt"
    tuned = tmp_path / "finetune"
    run_app(
        "train", "experiment=forge_finetune", f"init_from={best}", f"hydra.run.dir={tuned}", *common
    )
    assert json.loads((tuned / "summary.json").read_text())["init_from"] == str(best)

    missing = run_app(
        "train",
        "experiment=forge_finetune",
        f"init_from={tmp_path / 'no.ckpt'}",
        f"hydra.run.dir={tmp_path / 'bad'}",
        *common,
        check=False,
    )
    assert missing.returncode == 2 and "init_from" in missing.stderr + missing.stdout
