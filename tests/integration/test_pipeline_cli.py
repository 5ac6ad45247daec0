"""cuneidet-pipeline end to end on a synthetic CSDD: stages, manifests, skip, kill and resume."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from cuneidet.config import config_dir
from cuneidet.data.detection_files import read_paper_csv
from cuneidet.pipeline import align_stage
from cuneidet.pipeline import detect as detect_module
from cuneidet.pipeline.run import run_pipeline, train_config
from cuneidet.pipeline.stages import read_manifest
from tests.integration.test_cli import FAST, run_app
from tests.integration.test_lines_cli import train_line_net
from tests.synthetic_csdd import make_synthetic_csdd

STAGES = [
    "iter_0/lines",
    "iter_0/hypotheses",
    "iter_0/train",
    "iter_1/detect",
    "iter_1/align",
    "iter_1/place",
    "iter_1/train",
]


def _overrides(data, line_ckpt, log_dir):
    return [
        f"paths.data_dir={data}",
        f"paths.log_dir={log_dir}",
        f"pipeline.line_ckpt={line_ckpt}",
        "pipeline.name=synthetic",
        "pipeline.iteration=1",
        "pipeline.workers=1",
        # the tiny detector finds nothing after one epoch: real boxes keep iteration 1 trainable
        "pipeline.semi_supervised=true",
        "trainer.max_epochs=1",
        "data.val_tablets=[TRAIN002]",
        *FAST,
    ]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = make_synthetic_csdd(root / "data", train_tablets=4, test_tablets=2, with_lines=True)
    lines = root / "lines"
    # trained long enough to find some of the lines, so that iteration 0 has labels
    train_line_net(data, lines, "trainer.max_epochs=12", "data.crops_per_epoch=16")
    line_ckpt = lines / "checkpoints" / "best.ckpt"
    log_dir = root / "outputs"
    args = _overrides(data, line_ckpt, log_dir)
    results = root / "results" / "pipeline_synthetic.json"
    first = run_app(
        "pipeline", *args, f"pipeline.results_json={results}", f"hydra.run.dir={root / 'run1'}"
    )
    return {
        "data": data,
        "line_ckpt": line_ckpt,
        "log_dir": log_dir,
        "pipeline": log_dir / "pipelines" / "synthetic",
        "args": args,
        "first": first,
        "root": root,
        "results": results,
    }


def test_every_stage_is_written_with_a_finished_manifest(pipeline_run):
    folder = pipeline_run["pipeline"]
    for stage in STAGES:
        manifest = read_manifest(folder / stage)
        assert manifest is not None and manifest["status"] == "done", stage
        assert manifest["command"] and manifest["git_commit"] and manifest["hardware"]
        assert manifest["outputs"], stage
    assert not list(folder.rglob(".*.partial"))
    generated = read_paper_csv(folder / "iter_0" / "hypotheses" / "generated.csv")
    assert len(generated) > 0 and (generated["det_score"] == 1).all()
    assert (folder / "iter_1" / "train" / "checkpoints" / "best.ckpt").is_file()
    detect = read_manifest(folder / "iter_1" / "detect")
    assert detect["metrics"]["views"] == 4
    assert (
        detect["inputs"]["detector"]["fingerprint"]
        == read_manifest(folder / "iter_0" / "train")["fingerprint"]
    )


def test_metrics_table_summary_and_report(pipeline_run):
    folder = pipeline_run["pipeline"]
    table = pd.read_csv(folder / "metrics.csv")
    assert table["iteration"].tolist() == [0, 1]
    for column in ("train/test_mAP", "train/test_global_AP", "labels/placed_real_precision"):
        assert column in table.columns
    assert "lines/views" in table.columns and table["lines/views"].iloc[0] == 4
    summary = json.loads((folder / "summary.json").read_text())
    assert [row["iteration"] for row in summary["iterations"]] == [0, 1]
    results = json.loads(pipeline_run["results"].read_text())
    assert results["setting"] == "weak_real" and results["semi_supervised"] is True
    assert [row["iteration"] for row in results["iterations"]] == [0, 1]
    assert results["weak_views"] == 4
    assert results["weak_views_with_truth"] == {"real": 4, "forge": 0}
    assert set(results["stages"]) == set(STAGES)
    assert all(stage["command"] and stage["hardware"] for stage in results["stages"].values())
    assert results["paper_test_full_mAP"] == {"weak": 45.3, "semi": 65.6}
    report = (folder / "report.html").read_text()
    assert "report_files/map.png" in report and "<table>" in report
    assert (folder / "report_files" / "map.png").stat().st_size > 1000


def test_a_rerun_skips_every_finished_stage(pipeline_run):
    result = run_app(
        "pipeline", *pipeline_run["args"], f"hydra.run.dir={pipeline_run['root'] / 'run2'}"
    )
    log = result.stdout + result.stderr
    assert log.count("done already") == len(STAGES)
    assert "running into" not in log


def test_a_chained_multirun_runs_each_iteration_on_the_finished_ones(pipeline_run):
    """``-m pipeline.iteration=0,1``: job 0 and job 1 both find every stage they need done."""
    args = [a for a in pipeline_run["args"] if not a.startswith("pipeline.iteration=")]
    result = run_app(
        "pipeline",
        "-m",
        *args,
        "pipeline.iteration=0,1",
        f"hydra.sweep.dir={pipeline_run['root'] / 'sweep'}",
    )
    log = result.stdout + result.stderr
    assert log.count("done already") == 3 + len(STAGES)  # job 0: 3 stages, job 1: all 7
    assert "running into" not in log
    assert (pipeline_run["root"] / "sweep" / "1").is_dir()


def _compose(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("pipeline", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


class Killed(Exception):
    """Stands for the process being killed in the middle of a stage."""


KILLS = {
    # stage: (module, function that dies on its second call, the stage's outputs to compare)
    "detect": (detect_module.ViewDetector, "predict_step", "*.npz"),
    "align": (align_stage, "align_one_view", "aligned.csv"),
    "place": (align_stage, "place_one_view", "generated.csv"),
}


def _same_outputs(original, copy, pattern):
    for path in sorted(original.glob(pattern)):
        other = copy / path.name
        if path.suffix == ".npz":
            with np.load(path) as a, np.load(other) as b:
                assert all(np.array_equal(a[k], b[k]) for k in ("boxes", "scores", "labels"))
        else:
            assert path.read_bytes() == other.read_bytes(), path.name
    return len(list(original.glob(pattern)))


@pytest.mark.parametrize("stage", sorted(KILLS))
def test_a_run_killed_during_a_stage_resumes_to_the_same_artifacts(
    pipeline_run, tmp_path, monkeypatch, stage
):
    """The pipeline folder, moved elsewhere, keeps its finished stages; a stage that dies on its
    second view leaves no stage folder behind, and the rerun writes the same artifacts."""
    original = pipeline_run["pipeline"]
    copy = tmp_path / "outputs" / "pipelines" / "synthetic"
    shutil.copytree(original, copy)
    order = ["detect", "align", "place", "train"]
    for later in order[order.index(stage) :]:
        shutil.rmtree(copy / "iter_1" / later)
    args = _overrides(pipeline_run["data"], pipeline_run["line_ckpt"], tmp_path / "outputs")
    cfg = _compose([*args, f"paths.output_dir={tmp_path / 'run'}"])

    owner, name, pattern = KILLS[stage]
    real = getattr(owner, name)
    calls = []

    def dies_on_the_second_view(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed(f"{stage} killed on its second view")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, dies_on_the_second_view)
    with pytest.raises(Killed):
        run_pipeline(cfg)
    assert not (copy / "iter_1" / stage).exists()
    assert read_manifest(copy / "iter_1" / f".{stage}.partial")["status"] == "failed"

    monkeypatch.setattr(owner, name, real)
    run_pipeline(cfg)
    assert _same_outputs(original / "iter_1" / stage, copy / "iter_1" / stage, pattern) >= 1
    assert read_manifest(copy / "iter_1" / "train")["status"] == "done"
    assert not list(copy.rglob(".*.partial"))


def test_training_resumes_from_the_last_checkpoint_of_an_unfinished_stage(pipeline_run, tmp_path):
    args = _overrides(pipeline_run["data"], pipeline_run["line_ckpt"], tmp_path / "outputs")
    cfg = _compose([*args, f"paths.output_dir={tmp_path / 'run'}"])
    from cuneidet.pipeline.context import make_context
    from cuneidet.pipeline.stages import StageResult

    ctx = make_context(cfg)
    folder = pipeline_run["pipeline"]
    labels = StageResult(folder / "iter_0" / "hypotheses", {"fingerprint": "x"}, True)
    lines = StageResult(folder / "iter_0" / "lines", {"fingerprint": "y"}, True)
    out = tmp_path / ".train.partial"
    fresh = train_config(ctx, out, labels, lines, init=None)
    assert fresh.ckpt_path is None and fresh.init_from is None
    assert fresh.data.generated == [str(labels.directory / "generated.csv")]
    assert fresh.data.generated_line_dir == str(lines.directory)
    assert fresh.data.train_on_boxes is True  # semi-supervised
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"")
    resumed = train_config(ctx, out, labels, lines, init="previous.ckpt")
    assert resumed.ckpt_path == str(out / "checkpoints" / "last.ckpt")
    assert resumed.init_from == "previous.ckpt" and resumed.paths.output_dir == str(out)


def test_bad_settings_are_clear_errors(pipeline_run, tmp_path):
    result = run_app(
        "pipeline",
        *pipeline_run["args"],
        "pipeline.weak.box_sets=[]",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert result.returncode == 2
    assert "no weak view" in result.stdout + result.stderr


def test_another_pipeline_reuses_a_matching_line_stage(pipeline_run, tmp_path):
    from cuneidet.errors import ConfigError
    from cuneidet.pipeline.context import make_context
    from cuneidet.pipeline.run import lines_stage

    args = _overrides(pipeline_run["data"], pipeline_run["line_ckpt"], tmp_path / "outputs")
    shared = f"pipeline.lines_from={pipeline_run['pipeline']}"
    cfg = _compose([*args, "pipeline.name=other", shared, f"paths.output_dir={tmp_path}"])
    result = lines_stage(make_context(cfg))
    assert result.skipped and result.directory == pipeline_run["pipeline"] / "iter_0" / "lines"
    other = _compose([*args, shared, "pipeline.line_postprocess.threshold=0.5"])
    with pytest.raises(ConfigError, match="lines_from"):
        lines_stage(make_context(other))


# slow: trains a recogniser and exports it to ONNX (about 50 s)
@pytest.mark.slow
def test_a_trained_recogniser_starts_the_loop_as_detector_0(pipeline_run, tmp_path):
    """pipeline.start_from: the two-stage recogniser is detector 0 (no hypotheses, no training
    at iteration 0); iteration 1 aligns its detections and fine-tunes all of its weights."""
    data, log_dir = pipeline_run["data"], tmp_path / "outputs"
    two_stage = [
        "experiment=two_stage_cpu",
        "data.crop_batch_size=8",
        "trainer.limit_train_batches=2",
        "model.detector.localiser.fpn.pretrained=false",
        "model.detector.classifier.pretrained=false",
    ]
    recogniser = tmp_path / "recogniser"
    run_app(
        "train",
        *FAST,
        *two_stage,
        f"paths.data_dir={data}",
        "trainer.max_epochs=1",
        "data.val_tablets=[TRAIN002]",
        f"hydra.run.dir={recogniser}",
    )
    ckpt = recogniser / "checkpoints" / "last.ckpt"
    args = [
        *_overrides(data, pipeline_run["line_ckpt"], log_dir),
        *two_stage,
        "pipeline.name=start",
        f"pipeline.lines_from={pipeline_run['pipeline']}",
        f"pipeline.start_from={ckpt}",
        "pipeline.detect.runtime=onnx",  # detector 0 exported and run by ONNX Runtime
        # a partial initialisation the previous detector must override (else: file not found)
        f"init_classifier_from={tmp_path / 'missing.ckpt'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    run_app("pipeline", *args)
    root = log_dir / "pipelines" / "start"
    assert not (root / "iter_0" / "hypotheses").exists()
    start = read_manifest(root / "iter_0" / "train")
    assert start["status"] == "done" and start["metrics"]["start_from"] == str(ckpt)
    assert (root / "iter_0" / "train" / start["metrics"]["checkpoint"]).is_file()
    assert read_manifest(root / "iter_1" / "detect")["metrics"]["views"] > 0
    assert (root / "iter_1" / "detect" / "detector.json").is_file()
    assert (root / "iter_1" / "detect" / "detector.classifier.onnx").is_file()
    summary = json.loads((root / "iter_1" / "train" / "summary.json").read_text())
    assert summary["model"] == "TwoStageModule"
    assert summary["init_from"].endswith("iter_0/train/checkpoints/start.ckpt")
    assert summary["init_classifier_from"] is None
    table = pd.read_csv(root / "metrics.csv")
    assert list(table["iteration"]) == [0, 1]

    line_net = [
        *args[:-1],
        "pipeline.name=wrong",
        f"pipeline.start_from={pipeline_run['line_ckpt']}",
    ]
    result = run_app("pipeline", *line_net, f"hydra.run.dir={tmp_path / 'wrong'}", check=False)
    assert result.returncode != 0
    assert "not a sign detector" in result.stdout + result.stderr
