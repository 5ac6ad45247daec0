"""Bad input that must stop an entry point with a clear message and no traceback.

Each case runs a Hydra app in-process, as its console script would, and asserts the exit code
(2 for cuneidet's own input/config errors, 1 for Hydra's refusal of a misspelt override or
config group), substrings of the message that name the offending file/row/key and the fix, and
that none of the app's result artifacts (nor a temporary or empty file) is left behind.
The table of the cases is docs/bad_inputs.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.badinput.conftest import Corpus
from tests.badinput.support import INPUTS, TINY_DETECTOR, assert_clean, run_hydra_app

TRAIN_FAST = [
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "data.progress=false",
    "logger=csv",
    *TINY_DETECTOR,
]
EVAL_FAST = ["trainer.accelerator=cpu", "data.num_workers=0", "data.progress=false", "logger=csv"]

#: what each app writes when it succeeds: none of it may be left by a failed run
RESULTS = {
    "predict": ("detections.csv", "detections_coco.json", "scales.csv", "predict_summary.json"),
    "evaluate": ("metrics.json", "per_class_ap.csv", "detections.csv", "pr_curve.png"),
    "export": ("*.onnx", "model.json"),
    "lines": ("views.csv", "summary.json", "*.npz"),
    "pipeline": ("manifest.json", "generated.csv", "report.html"),
    "forge": ("forge_report.json", "*.jpg"),
    "train": ("*.ckpt", "summary.json"),
    "classify": ("*.ckpt", "summary.json"),
}

Args = Callable[[Corpus, Path], list[str]]


@dataclass(frozen=True)
class Case:
    app: str
    args: Args
    code: int
    needles: tuple[str, ...]
    marks: tuple = field(default=())


def _predict(*extra: str) -> Args:
    def args(c: Corpus, t: Path) -> list[str]:
        return [
            f"ckpt_path={c.detector}",
            f"inputs=[{c.good_photo}]",
            f"paths.data_dir={c.data}",
            *(e.format(c=c, t=t) for e in extra),
        ]

    return args


def _scales(text: str) -> Args:
    """predict with ``scales_csv`` holding ``text`` (written into the case's folder)."""

    def args(c: Corpus, t: Path) -> list[str]:
        path = t / INPUTS / "photo_scales.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return _predict(f"scales_csv={path}")(c, t)

    return args


def _with(*extra: str, base: list[str] | None = None) -> Args:
    """Overrides with ``{c.<attr>}`` / ``{t}`` placeholders (corpus, case folder)."""

    def args(c: Corpus, t: Path) -> list[str]:
        return [e.format(c=c, t=t) for e in (*(base or []), *extra)]

    return args


DATA = "paths.data_dir={c.data}"


def _header_only_boxes(c: Corpus, t: Path) -> list[str]:
    """train on a copy of the data whose train_full box file holds only its header."""
    data = Path(shutil.copytree(c.data, t / INPUTS / "data"))
    boxes = data / "csdd" / "annotations" / "bbox_annotations_train_full.csv"
    boxes.write_text(boxes.read_text().splitlines()[0] + "\n")
    return [f"paths.data_dir={data}", *TRAIN_FAST]


CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- cuneidet-predict
    "predict-ckpt-truncated": Case(
        "predict",
        _predict("ckpt_path={c.truncated}"),
        2,
        ("trunc.ckpt", "not a readable checkpoint", "copy it again"),
    ),
    "predict-ckpt-line-network": Case(
        "predict",
        _predict("ckpt_path={c.line_net}"),
        2,
        ("line.ckpt", "holds a LineModule, not a sign detector", "cuneidet-lines"),
    ),
    "predict-onnx-not-onnx": Case(
        "predict",
        _predict("runtime=onnx", "model_file={c.fake_onnx}"),
        2,
        ("fake.onnx", "is not a loadable ONNX model", "re-export it with cuneidet-export"),
    ),
    "predict-onnx-without-sidecar": Case(
        "predict",
        _predict("runtime=onnx", "model_file={c.lonely_onnx}"),
        2,
        ("lonely.json", "does not exist", "cuneidet-export"),
    ),
    "predict-input-missing": Case(
        "predict",
        _predict("inputs=[{t}/nowhere.jpg]"),
        2,
        ("nowhere.jpg does not exist", "give photo files, folders of photos or glob patterns"),
    ),
    "predict-input-pattern-matches-nothing": Case(
        "predict",
        _predict("inputs=[{t}/*.tif]"),
        2,
        ("*.tif matches no file", "quote it"),
    ),
    "predict-config-typo": Case(
        "predict",
        _predict("inferance.score_thresh=0.2"),
        1,
        ("Could not override 'inferance.score_thresh'", "+inferance.score_thresh=0.2"),
    ),
    "predict-scale-wrong-type": Case(
        "predict",
        _predict("scale=abc"),
        2,
        ("scale must be a positive number or auto", "'abc'"),
    ),
    "predict-tiling-wrong-type": Case(
        "predict",
        _predict("tiling.tile_size=big"),
        2,
        ("tiling.tile_size must be a positive whole number or null", "'big'"),
    ),
    "predict-scales-csv-missing-column": Case(
        "predict",
        _scales("name,factor\ngood,1.0\n"),
        2,
        ("photo_scales.csv", "missing column(s) ['scale']", "expected columns name,scale"),
    ),
    "predict-scales-csv-nan-scale": Case(
        "predict",
        _scales("name,scale\nother,1.0\ngood,nan\n"),
        2,
        ("photo_scales.csv: line 3", "scale must be a positive number or auto", "nan"),
    ),
    "predict-scales-csv-duplicate-name": Case(
        "predict",
        _scales("name,scale\ngood,1.0\ngood,2.0\n"),
        2,
        ("photo_scales.csv", "'good' is named on line 2 and again on line 3", "one row per photo"),
    ),
    "predict-scales-csv-malformed-bbox": Case(
        "predict",
        _scales("name,scale,x0,y0,x1,y1\ngood,1.0,left,0,100,100\n"),
        2,
        ("photo_scales.csv: line 2 has a bad segment bbox", "x0='left'", "four pixel numbers"),
    ),
    "predict-scales-csv-zero-byte": Case(
        "predict",
        _scales(""),
        2,
        ("photo_scales.csv: cannot be read as CSV", "expected columns name,scale"),
    ),
    # ---------------------------------------------------------------- cuneidet-eval
    "eval-ckpt-truncated": Case(
        "evaluate",
        _with("ckpt_path={c.truncated}", DATA, base=EVAL_FAST),
        2,
        ("trunc.ckpt", "not a readable checkpoint", "best.ckpt / last.ckpt"),
    ),
    "eval-ckpt-foreign-weights": Case(
        "evaluate",
        _with("ckpt_path={c.foreign}", DATA, base=EVAL_FAST),
        2,
        ("plain.pth", "has no cuneidet model config", "cuneidet.models.reference_weights"),
    ),
    "eval-unknown-test-set": Case(
        "evaluate",
        _with("ckpt_path={c.detector}", DATA, "data.test_sets=[test_ful]", base=EVAL_FAST),
        2,
        ("Unknown box set(s) ['test_ful']", "valid names: train_full, test_full"),
    ),
    "eval-ckpt-path-not-given": Case(
        "evaluate",
        _with(DATA, base=EVAL_FAST),
        2,
        ("ckpt_path", "command line"),
    ),
    # ---------------------------------------------------------------- cuneidet-export
    "export-format-typo": Case(
        "export",
        _with("ckpt_path={c.detector}", DATA, "format=onx"),
        2,
        ("format=onx is not supported", "choose from ('onnx',)"),
    ),
    "export-ckpt-truncated": Case(
        "export",
        _with("ckpt_path={c.truncated}", DATA, "output={t}/out/model.onnx"),
        2,
        ("trunc.ckpt", "not a readable checkpoint", "copy it again"),
    ),
    "export-output-not-onnx": Case(
        "export",
        _with("ckpt_path={c.detector}", DATA, "output={t}/out/model.pt"),
        2,
        ("model.pt", "must end in .onnx"),
    ),
    # ---------------------------------------------------------------- cuneidet-lines
    "lines-action-typo": Case(
        "lines",
        _with("ckpt_path={c.line_net}", DATA, "action=predcit"),
        2,
        ("Unknown action 'predcit'", "valid: predict, evaluate"),
    ),
    "lines-ckpt-detector": Case(
        "lines",
        _with("ckpt_path={c.detector}", DATA, "views.collections=[train]"),
        2,
        ("det.ckpt", "holds a DetectorModule, not a line network", "model=line_net"),
    ),
    "lines-no-views-chosen": Case(
        "lines",
        _with("ckpt_path={c.line_net}", DATA),
        2,
        ("choose views", "views.collections=[saa01,...] or views.splits=[test]"),
    ),
    # ---------------------------------------------------------------- cuneidet-pipeline
    "pipeline-iteration-negative": Case(
        "pipeline",
        _with(
            DATA,
            "pipeline.root={t}/pipe",
            "pipeline.line_ckpt={c.line_net}",
            "pipeline.iteration=-1",
        ),
        2,
        ("pipeline.iteration must be ≥ 0", "got -1"),
    ),
    "pipeline-line-ckpt-detector": Case(
        "pipeline",
        _with(DATA, "pipeline.root={t}/pipe", "pipeline.line_ckpt={c.detector}"),
        2,
        ("det.ckpt", "not a line network", "model=line_net"),
    ),
    "pipeline-line-ckpt-not-given": Case(
        "pipeline",
        _with(DATA, "pipeline.root={t}/pipe"),
        2,
        ("pipeline.line_ckpt", "command line"),
    ),
    "pipeline-init-typo": Case(
        "pipeline",
        _with(
            DATA,
            "pipeline.root={t}/pipe",
            "pipeline.line_ckpt={c.line_net}",
            "pipeline.init=scratc",
            "pipeline.line_postprocess.threshold=0.0",
            "pipeline.weak.limit=1",
            "data.progress=false",
        ),
        2,
        ("pipeline.init must be previous or scratch", "scratc"),
    ),
    # ---------------------------------------------------------------- cuneidet-forge
    "forge-action-typo": Case(
        "forge",
        _with(DATA, "action=rendr"),
        2,
        ("Unknown action 'rendr'", "valid: render, sheet"),
    ),
    "forge-no-tablets-chosen": Case(
        "forge",
        _with(DATA, "paths.forge_dir={t}/forge"),
        2,
        ("No tablets chosen", "collections=[saa01,...]"),
    ),
    "forge-unknown-tablet": Case(
        "forge",
        _with(DATA, "paths.forge_dir={t}/forge", "tablets=[NOPE]"),
        2,
        ("Unknown tablets ['NOPE'] (forge.tablets)", "no segment in the CSDD"),
    ),
    "forge-unknown-parameter": Case(
        "forge",
        _with(DATA, "paths.forge_dir={t}/forge", "tablets=[TRAIN000]", "+forge.params.crackz=1"),
        2,
        ("Unknown forge parameters ['crackz'] (forge.params)", "valid: ambient"),
    ),
    "forge-font-not-a-font": Case(
        "forge",
        _with(
            DATA,
            "paths.forge_dir={t}/forge",
            "collections=[train]",
            "forge.font={c.root}/photos/good.png",
            "workers=1",
            "progress=false",
        ),
        2,
        ("all 3 tablets failed", "good.png", "Cannot read the font", "replace it"),
    ),
    # ---------------------------------------------------------------- cuneidet-classify
    "classify-unknown-box-set": Case(
        "classify",
        _with(DATA, "data.train_sets=[train_nope]", "data.num_workers=0", "data.progress=false"),
        2,
        ("Unknown box set(s) ['train_nope']", "valid names: train_full, test_full"),
    ),
    "classify-config-group-typo": Case(
        "classify",
        _with(DATA, "model=classifer"),
        1,
        ("Could not find 'model/classifer'", "Available options in 'model'", "classifier"),
    ),
    # ---------------------------------------------------------------- cuneidet-train
    "train-data-dir-missing": Case(
        "train",
        _with("paths.data_dir={t}/nowhere", base=TRAIN_FAST),
        2,
        ("nowhere", "data.data_dir"),
    ),
    "train-unknown-box-set": Case(
        "train",
        _with(DATA, "data.train_sets=[train_ful]", base=TRAIN_FAST),
        2,
        ("Unknown box set(s) ['train_ful']", "valid names: train_full, test_full"),
    ),
    "train-batch-size-wrong-type": Case(
        "train",
        _with(DATA, "data.batch_size=abc", "trainer.max_epochs=1", base=TRAIN_FAST),
        2,
        ("data.batch_size must be a whole number ≥ 1", "'abc'"),
    ),
    "train-init-from-truncated": Case(
        "train",
        _with(DATA, "init_from={c.truncated}", base=TRAIN_FAST),
        2,
        ("trunc.ckpt", "not a readable checkpoint", "copy it again"),
    ),
    "train-empty-box-set": Case(
        "train",
        _header_only_boxes,
        2,
        ("train_full", "no boxes", "choose box sets with boxes"),
    ),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=name, marks=case.marks) for name, case in CASES.items()],
)
def test_bad_input_is_a_clear_error(case: Case, corpus: Corpus, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    outcome = run_hydra_app(case.app, case.args(corpus, tmp_path), run_dir)
    outcome.assert_error(case.code, *case.needles)
    assert_clean(tmp_path, *RESULTS[case.app])
