"""Every primary config and every config-group entry composes; model entries instantiate."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict

from cuneidet.config import config_dir
from cuneidet.utils.instantiate import instantiate, instantiate_list

CONFIGS = Path(config_dir())


def _entries(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    "name", ["train", "eval", "predict", "forge", "lines", "classify", "export", "serve"]
)
def test_primary_configs_compose(name):
    overrides = ["ckpt_path=x.ckpt"] if name in ("eval", "predict", "lines", "export") else []
    if name == "predict":
        overrides.append("inputs=[a.jpg]")
    cfg = _compose(name, overrides)
    assert cfg.task_name == name


def test_predict_takes_the_onnx_runtime_and_automatic_scale():
    cfg = _compose("predict", ["runtime=onnx", "model_file=m.onnx", "inputs=[a.jpg]", "scale=auto"])
    assert cfg.runtime == "onnx" and cfg.scale == "auto" and cfg.threads == 2
    assert set(cfg.scale_auto) >= {"candidates", "reference_height", "window"}
    pipeline = _compose("pipeline", ["pipeline.line_ckpt=l.ckpt", "pipeline.detect.runtime=onnx"])
    assert pipeline.pipeline.detect.runtime == "onnx"


@pytest.mark.parametrize(
    "group",
    [
        "data",
        "model",
        "model/backbone",
        "model/head",
        "model/optimizer",
        "trainer",
        "callbacks",
        "logger",
        "experiment",
        "hparams_search",
        "debug",
        "paths",
        "hydra",
    ],
)
def test_every_group_entry_composes(group):
    entries = _entries(group)
    assert entries, f"config group {group} is empty"
    for entry in entries:
        cfg = _compose("train", [f"{group}={entry}"])
        assert cfg is not None


def test_every_forge_entry_composes_and_builds_a_forge(tmp_path):
    from cuneidet.cli.forge import build_forge

    entries = _entries("forge")
    assert {"default", "clean", "from_transliteration"} <= set(entries)
    variants = set()
    for entry in entries:
        cfg = _compose(
            "forge",
            [f"forge={entry}", f"data_dir={tmp_path}", f"paths.forge_dir={tmp_path / 'forge'}"],
        )
        (tmp_path / "csdd").mkdir(exist_ok=True)
        forge = build_forge(cfg)
        variants.add(forge.variant)
    assert len(variants) == len(entries), "different settings must render into different folders"


@pytest.mark.parametrize("backbone", _entries("model/backbone"))
@pytest.mark.parametrize("head", _entries("model/head"))
def test_model_entries_instantiate(backbone, head):
    cfg = _compose("train", [f"model/backbone={backbone}", f"model/head={head}"])
    module = instantiate(cfg.model)
    assert module.detector.num_classes == 240
    if backbone == "paper_mobilenetv2" and head == "ssd":
        params = sum(p.numel() for p in module.detector.parameters())
        assert abs(params - 13.4e6) / 13.4e6 < 0.01


def test_trainer_callbacks_and_loggers_instantiate(tmp_path):
    cfg = _compose("train", ["logger=csv", f"hydra.run.dir={tmp_path}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    OmegaConf.resolve(cfg.callbacks)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    assert {type(c).__name__ for c in callbacks} >= {"ModelCheckpoint", "TQDMProgressBar"}
    logger = instantiate(cfg.logger.csv)
    assert Path(logger.save_dir) == tmp_path


def test_config_typo_is_a_clear_error():
    with pytest.raises(ConfigCompositionException, match="trian_sets"):
        _compose("train", ["data.trian_sets=[train_full]"])
    with pytest.raises(ConfigCompositionException, match="model/backbone"):
        _compose("train", ["model/backbone=resnet17"])


def test_last_checkpoint_is_written_every_epoch_not_only_with_a_new_best():
    cfg = _compose("train", ["paths.output_dir=/tmp/x"])
    callbacks = {
        type(c).__name__ + str(getattr(c, "monitor", "")): c
        for c in instantiate_list(cfg.callbacks)
    }
    best = callbacks["ModelCheckpointval/mAP"]
    last = callbacks["ModelCheckpointNone"]
    assert best.filename == "best" and not best.save_last
    assert last.filename == "last" and last.monitor is None and last._every_n_epochs == 1
    assert last._save_on_train_epoch_end


@pytest.mark.parametrize("arch", _entries("model/line_arch"))
def test_line_net_entries_compose_and_instantiate(arch):
    from cuneidet.lines.module import LineModule

    cfg = _compose("train", ["model=line_net", f"model/line_arch={arch}"])
    assert cfg.data._target_.endswith("LineDataModule")
    assert cfg.callbacks.model_checkpoint.monitor == "val/line_F1"
    module = instantiate(cfg.model)
    assert isinstance(module, LineModule)
    assert module.grid.stride in (8.0, 32.0)


@pytest.mark.parametrize("entry", _entries("pipeline"))
def test_every_pipeline_entry_composes(entry):
    cfg = _compose("pipeline", [f"pipeline={entry}", "pipeline.line_ckpt=x.ckpt"])
    assert cfg.task_name == "pipeline" and cfg.pipeline.setting == entry
    assert cfg.pipeline.weak.box_sets == ["train_full"]
    assert cfg.pipeline.semi_supervised == (entry == "semi")
    if entry != "weak_real":
        assert "saa01" in cfg.pipeline.weak.collections


@pytest.mark.parametrize("entry", _entries("alignment"))
def test_every_alignment_entry_builds_its_settings(entry):
    from cuneidet.pipeline.run import align_settings

    cfg = _compose("pipeline", [f"alignment={entry}", "pipeline.line_ckpt=x.ckpt"])
    settings = align_settings(cfg)
    assert settings.sign.outlier_cost == {"hp04": 25.0, "hp00": 10.0}[entry]
    assert settings.refine_clip == 80.0 and settings.placement["max_distance"] == 10


def test_the_slurm_launcher_config_composes():
    cfg = _compose("pipeline", ["hydra/launcher=slurm", "pipeline.line_ckpt=x.ckpt"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1


@pytest.mark.parametrize(
    ("first_stage", "second_stage", "target"),
    [("recognition_cpu_classifier", "recognition_cpu", "train-best")],
)
def test_second_stage_reads_the_first_stage_classifier(first_stage, second_stage, target):
    first = _compose("classify", [f"experiment={first_stage}"])
    second = _compose("train", [f"experiment={second_stage}"])
    run_dir = first.hydra.run.dir
    assert run_dir.endswith(f"/{first_stage}")
    assert first.callbacks.model_checkpoint.enable_version_counter is False
    checkpoint = OmegaConf.to_container(first.callbacks.model_checkpoint)
    assert checkpoint["dirpath"] == "${paths.output_dir}/checkpoints"
    assert second.init_classifier_from == f"{run_dir}/checkpoints/best.ckpt"
    # the first stage's network fits the second stage's naming network
    assert first.model.net.variant == second.model.detector.classifier.variant
    assert first.model.net.num_classes == second.model.detector.classifier.num_classes
    makefile = (CONFIGS.parent / "Makefile").read_text()
    recipe = makefile[makefile.index(f"\n{target}:") :].split("\n\n")[0]
    assert f"rm -rf outputs/{first_stage}" in recipe
    assert f"experiment={first_stage}" in recipe and f"experiment={second_stage}" in recipe


@pytest.mark.parametrize("entry", [e for e in _entries("experiment") if e != "recognition_cpu"])
def test_only_the_two_stage_recipes_start_from_a_first_stage_classifier(entry):
    cfg = _compose("train", [f"experiment={entry}"])
    for key in ("init_classifier_from", "init_backbone_from"):
        value = str(OmegaConf.to_container(cfg)[key] or "")
        assert "make_train_classifier" not in value
        assert "recognition_cpu_classifier" not in value


@pytest.mark.parametrize(
    ("search", "experiment"),
    [("two_stage_optuna", "two_stage_cpu"), ("make_train_optuna", "make_train")],
)
def test_every_searched_parameter_exists_in_its_recipe(search, experiment):
    cfg = _compose("train", [f"experiment={experiment}", f"hparams_search={search}"])
    assert cfg.test is False, "a trial never touches test_full"
    assert cfg.optimized_metric.startswith("val/")
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"{search} tunes {key}, not in {experiment}"


@pytest.mark.parametrize(("sign_height", "sizes"), [(64, [48, 96, 192]), (128, [96, 192, 384])])
def test_two_stage_anchors_follow_the_working_sign_height(sign_height, sizes):
    cfg = _compose("train", ["experiment=two_stage_cpu", f"data.sign_height={sign_height}"])
    assert list(cfg.model.detector.localiser.anchors.sizes) == sizes
    anchors = instantiate(cfg.model.detector.localiser.anchors)
    assert anchors.sizes == [float(s) for s in sizes]


def test_per_sign_refuses_a_sign_height_that_is_not_positive():
    from cuneidet.config import per_sign

    assert per_sign(48, 96) == 72.0
    with pytest.raises(ValueError, match="positive"):
        per_sign(48, 0)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [([], "semi-paper_mobilenetv2"), (["experiment=recognition_cpu"], "semi-two_stage")],
)
def test_a_pipeline_folder_is_named_by_the_backbone_or_else_the_model(overrides, name):
    from hydra.core.hydra_config import HydraConfig

    cfg = _compose("pipeline", ["pipeline=semi", "pipeline.line_ckpt=x.ckpt", *overrides])
    HydraConfig.instance().set_config(cfg)
    assert cfg.pipeline.name == name


def test_make_train_is_one_joint_run_from_the_imagenet_weights():
    cfg = _compose("train", ["experiment=make_train"])
    assert cfg.init_classifier_from is None and cfg.init_backbone_from is None
    assert cfg.model.detector.localiser.fpn.pretrained and cfg.model.detector.classifier.pretrained
    assert cfg.trainer.max_time == "00:00:14:00" and cfg.test is True
    makefile = (CONFIGS.parent / "Makefile").read_text()
    recipe = makefile[makefile.index("\ntrain:") :].split("\n\n")[0]
    assert recipe.count("$(BIN)/cuneidet-") == 1 and "experiment=make_train $(ARGS)" in recipe


def test_the_oracle_bone_experiment_composes_and_builds():
    cfg = _compose("train", ["experiment=oracle_bone", "model.net.pretrained=false"])
    assert cfg.data._target_.endswith("JiaguwenDataModule") and cfg.optimized_metric == "val/top1"
    module = instantiate(cfg.model)
    assert type(module).__name__ == "OracleClassifier" and module.num_classes == 793
    serve = _compose("serve", [])
    assert serve.serve.oracle_ckpt.endswith("oracle_bone/checkpoints/best.ckpt")


@pytest.mark.parametrize("localiser", _entries("model/localiser"))
def test_every_localiser_entry_builds_a_recogniser(localiser):
    from cuneidet.models.two_stage import TwoStageModule

    overrides = [
        "experiment=make_train",
        f"model/localiser={localiser}",
        "model.detector.localiser.fpn.pretrained=false",
        "model.detector.classifier.pretrained=false",
    ]
    cfg = _compose("train", overrides)
    module = instantiate(cfg.model)
    assert isinstance(module, TwoStageModule)
    assert module.detector.localiser.num_classes == 2
    assert type(module.detector.localiser).__name__ == (
        "WatershedDetector" if localiser == "watershed" else "SignDetector"
    )
