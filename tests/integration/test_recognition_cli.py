"""End to end on a synthetic CSDD: cuneidet-classify → two-stage and one-stage training from its
checkpoint → cuneidet-eval (test detections CSV) → cuneidet-predict at the working scale."""

import json

import pandas as pd
import pytest
from PIL import Image

from tests.integration.test_cli import run_app
from tests.synthetic_csdd import make_synthetic_csdd

FAST = [
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "data.progress=false",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=1",
    "data.val_fraction=0.25",
]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("recognition")
    data = make_synthetic_csdd(root / "data")
    run_dir = root / "classify"
    run_app(
        "classify",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=2",
        "data.batch_size=16",
        "model.net.pretrained=false",
        *FAST,
    )
    return data, run_dir


def test_classifier_reports_crop_accuracies(classifier):
    _, run_dir = classifier
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("test_top1", "test_top5", "test_mean_per_class", "train_time_s", "git_commit"):
        assert key in summary
    assert 0 <= summary["test_top1"] <= summary["test_top5"] <= 100
    per_class = pd.read_csv(run_dir / "test" / "per_class_accuracy.csv")
    assert set(per_class["label"]) <= {1, 2, 3} and len(per_class)
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


@pytest.fixture(scope="module")
def two_stage(classifier, tmp_path_factory):
    data, cls_dir = classifier
    run_dir = tmp_path_factory.mktemp("two_stage") / "run"
    run_app(
        "train",
        "experiment=two_stage_cpu",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run_dir}",
        f"init_classifier_from={cls_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "data.batch_size=2",
        "data.crop_batch_size=8",
        "model.detector.localiser.fpn.pretrained=false",
        "model.detector.classifier.pretrained=false",
        *FAST,
    )
    return data, run_dir


def test_two_stage_trains_from_the_classifier_and_writes_test_detections(two_stage):
    _, run_dir = two_stage
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "TwoStageModule"
    assert summary["init_classifier_from"].endswith("best.ckpt")
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert {"train/crop_loss", "val/mAP", "val/loc_AP"} <= set(metrics.columns)
    detections = run_dir / "test" / "detections.csv"
    header = detections.read_text().splitlines()[0]
    assert header.startswith("imageName, folder, image_path, mzl_label, train_label, x1")


def test_eval_and_predict_use_the_checkpoint_working_scale(two_stage, tmp_path):
    data, run_dir = two_stage
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    out = tmp_path / "eval"
    run_app(
        "evaluate",
        f"paths.data_dir={data}",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={out}",
        "trainer.accelerator=cpu",
        "data.num_workers=0",
        "data.progress=false",
    )
    report = json.loads((out / "metrics.json").read_text())
    trained = json.loads((run_dir / "test" / "metrics.json").read_text())
    # same checkpoint, same test set, same working scale: the same figures
    assert report["map"] == pytest.approx(trained["map"], abs=1e-6)
    assert (out / "detections.csv").is_file()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(data / "csdd" / "images" / "TEST000.jpg").save(photos / "tablet.png")
    pred = tmp_path / "predict"
    run_app(
        "predict",
        f"ckpt_path={ckpt}",
        f"inputs=[{photos}]",
        "scale=1.0",
        f"paths.data_dir={data}",
        f"hydra.run.dir={pred}",
        "recogniser.top_k=3",
        "recogniser.tta_contexts=[1.2,1.4]",
    )
    summary = json.loads((pred / "predict_summary.json").read_text())
    assert summary["photos"] == 1


# slow: exports a full-size recogniser (about 50 s); tests/unit/test_deploy.py and
# tests/integration/test_serve_model.py cover export and ONNX Runtime on tiny models by default
@pytest.mark.slow
def test_export_then_predict_in_onnx_runtime_gives_the_pytorch_boxes(two_stage, tmp_path):
    """cuneidet-export → cuneidet-predict runtime=onnx runs like runtime=torch, and scale=auto
    records its scale or counts a skip. (The barely trained localiser scores every anchor within
    1e-4 of the others, so which near-tied boxes survive NMS may differ between runtimes: box
    parity is tested on networks with spread scores in tests/unit/test_deploy.py.)"""
    data, run_dir = two_stage
    model = tmp_path / "export" / "sign.onnx"
    run_app(
        "export",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"output={model}",
        f"paths.data_dir={data}",
        f"hydra.run.dir={tmp_path / 'export_run'}",
        "recogniser.top_k=3",
    )
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["kind"] == "two_stage" and sidecar["recogniser"]["top_k"] == 3
    assert sidecar["classes"] and sidecar["source"]["checkpoint"].endswith("best.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(data / "csdd" / "images" / "TEST000.jpg").save(photos / "tablet.png")
    frames = {}
    for runtime, source in (
        ("torch", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"),
        ("onnx", f"model_file={model}"),
    ):
        out = tmp_path / runtime
        run_app(
            "predict",
            f"runtime={runtime}",
            source,
            f"inputs=[{photos}]",
            "scale=1.0",
            "recogniser.top_k=3",
            "recogniser.loc_score_thresh=0.0",
            "recogniser.max_boxes=20",
            "inference.score_thresh=0.0",
            f"paths.data_dir={data}",
            f"hydra.run.dir={out}",
        )
        frame = pd.read_csv(out / "detections.csv", sep=r",\s*", engine="python")
        frames[runtime] = frame.sort_values(["train_label", "x1", "y1"]).reset_index(drop=True)
        assert json.loads((out / "predict_summary.json").read_text())["runtime"] == runtime
    torch_frame, onnx_frame = frames["torch"], frames["onnx"]
    assert len(torch_frame) > 0 and len(onnx_frame) > 0
    assert abs(torch_frame["det_score"].max() - onnx_frame["det_score"].max()) < 1e-4
    auto = tmp_path / "auto"
    run_app(
        "predict",
        "runtime=onnx",
        f"model_file={model}",
        f"inputs=[{photos}]",
        "scale=auto",
        f"paths.data_dir={data}",
        f"hydra.run.dir={auto}",
    )
    summary = json.loads((auto / "predict_summary.json").read_text())
    assert summary["scale"] == "auto" and summary["photos"] == 1
    # a barely trained model may find too few signs to measure: then a counted skip
    assert len(summary["scales"]) + len(summary["failed"]) == 1
    if summary["scales"]:
        assert summary["scales"][0]["auto"] and summary["scales"][0]["scale"] > 0
        assert pd.read_csv(auto / "scales.csv")["scale"].iloc[0] > 0


@pytest.mark.slow
def test_one_stage_starts_from_the_classifier(classifier, tmp_path):
    data, cls_dir = classifier
    run_app(
        "train",
        "experiment=one_stage_cpu",
        f"paths.data_dir={data}",
        f"hydra.run.dir={tmp_path / 'one'}",
        f"init_backbone_from={cls_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "test=false",
        "data.batch_size=2",
        "model.detector.fpn.pretrained=false",
        *FAST,
    )
    assert (tmp_path / "one" / "checkpoints" / "last.ckpt").is_file()


def test_wrong_checkpoints_for_initialisation_fail_clearly(classifier, two_stage, tmp_path):
    data, cls_dir = classifier
    _, two_dir = two_stage
    wrong = run_app(
        "train",
        "experiment=two_stage_cpu",
        f"paths.data_dir={data}",
        f"hydra.run.dir={tmp_path / 'wrong'}",
        f"init_classifier_from={two_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer.max_epochs=1",
        *FAST,
        check=False,
    )
    assert wrong.returncode == 2
    assert "not a sign-classifier checkpoint" in wrong.stderr + wrong.stdout
    paper = run_app(
        "train",
        f"paths.data_dir={data}",
        f"hydra.run.dir={tmp_path / 'paper'}",
        f"init_backbone_from={cls_dir / 'checkpoints' / 'best.ckpt'}",
        *FAST,
        check=False,
    )
    assert paper.returncode == 2
    assert "EfficientNet-Lite backbone" in paper.stderr + paper.stdout
    # the classifier is EfficientNet-Lite2, the two-stage localiser Lite0: the body cannot fit
    other_variant = run_app(
        "train",
        "experiment=two_stage_cpu",
        f"paths.data_dir={data}",
        f"hydra.run.dir={tmp_path / 'variant'}",
        f"init_backbone_from={cls_dir / 'checkpoints' / 'best.ckpt'}",
        "model.detector.localiser.fpn.pretrained=false",
        "model.detector.classifier.pretrained=false",
        *FAST,
        check=False,
    )
    assert other_variant.returncode == 2
    assert "same EfficientNet variant" in other_variant.stderr + other_variant.stdout


@pytest.mark.slow
def test_optuna_search_tunes_on_validation_and_collects_a_csv(classifier, tmp_path):
    import subprocess
    import sys

    data, _ = classifier
    sweep = tmp_path / "sweep"
    run_app(
        "train",
        "experiment=two_stage_cpu",
        "hparams_search=two_stage_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweep.dir={sweep}",
        f"paths.data_dir={data}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "data.batch_size=2",
        "data.crop_batch_size=8",
        "model.detector.localiser.fpn.pretrained=false",
        "model.detector.classifier.pretrained=false",
        *FAST,
    )
    assert not list(sweep.glob("*/test/metrics.json")), "a trial must never touch test_full"
    out = tmp_path / "trials.csv"
    subprocess.run(
        [sys.executable, "scripts/collect_sweep.py", str(sweep), "--out", str(out)], check=True
    )
    trials = pd.read_csv(out)
    assert len(trials) == 2 and "model.optimizer.lr" in trials.columns and "score" in trials
