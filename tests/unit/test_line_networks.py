"""Line networks, dense targets, crops and the map → hypotheses → assignment path."""

import numpy as np
import pandas as pd
import pytest
import torch

from cuneidet.align import prepare_transliteration
from cuneidet.data.line_geometry import MapGrid
from cuneidet.errors import ConfigError
from cuneidet.lines.data import LineCropDataset, LineSample, normalize
from cuneidet.lines.module import cell_targets
from cuneidet.lines.networks import LineSegNet, PaperLineNet
from cuneidet.lines.predict import (
    LinePostprocess,
    hypotheses_from_probability,
    line_probability,
)


def test_paper_line_net_is_a_227_patch_classifier_run_convolutionally():
    net = PaperLineNet().eval()
    assert net(torch.zeros(2, 1, 227, 227)).shape == (2, 2, 1, 1)
    assert net(torch.zeros(1, 1, 512, 739)).shape == (1, 2, 9, 17)
    assert net.grid == MapGrid(32, 113)


@pytest.mark.parametrize("stride", [8, 16])
def test_line_seg_net_strides(stride):
    net = LineSegNet(backbone="resnet18", stride=stride, channels=16).eval()
    out = net(torch.zeros(1, 1, 128, 192))
    assert out.shape == (1, 2, 128 // stride, 192 // stride)
    assert net.grid.stride == stride


def test_line_seg_net_rejects_other_strides():
    with pytest.raises(ConfigError, match="stride"):
        LineSegNet(stride=4)


def test_probability_of_a_view_smaller_than_the_receptive_field():
    net = PaperLineNet()
    probability = line_probability(net, normalize(np.zeros((100, 150), np.uint8)))
    assert probability.shape == (1, 1) and 0 <= probability[0, 0] <= 1
    assert net.training, "line_probability restores the training mode"


def test_cell_targets_mark_cells_near_lines_and_ignore_outside():
    distance = torch.full((1, 64, 64), 100.0)
    distance[0, 27:37, :] = 0.0  # a horizontal line band around row 32
    grid = MapGrid(stride=8, offset=3.5)
    targets = cell_targets(distance, grid, (9, 8), height=6.0)
    assert targets.shape == (1, 9, 8)
    assert targets[0, 4].eq(1).all()  # cell row 4 is centred at pixel 35.5
    assert targets[0, 0].eq(0).all()
    assert targets[0, 8].eq(-1).all()  # centred at 67.5, outside the crop


def _sample(height=400, width=600) -> LineSample:
    image = np.full((height, width), 180, np.uint8)
    lines = []
    for y in (100, 220, 340):
        image[y - 20 : y + 20, 50:550] = 60
        lines.append(np.array([[50.0, y], [550.0, y]]))
    return LineSample("c/0", "T Obv", image, lines, 120.0)


def test_crop_dataset_is_reproducible_and_its_distances_follow_the_lines():
    dataset = LineCropDataset([_sample()], crop_size=128, length=4, zoom_range=(1, 1), rotation=0)
    torch.manual_seed(0)
    first = dataset[0]
    torch.manual_seed(0)
    again = dataset[0]
    assert first["image"].shape == (1, 128, 128) and first["distance"].shape == (128, 128)
    assert torch.equal(first["image"], again["image"])
    dark = first["image"][0] < -0.1
    if dark.any():  # pixels of a drawn line are close to an annotated line
        assert first["distance"][dark].max() <= 21


def _transliteration(lines: int) -> object:
    rows = [
        {
            "collection": "c",
            "segm_idx": 0,
            "tablet_CDLI": "T",
            "view_desc": "Obv",
            "rec_idx": 0,
            "line_idx": line,
            "pos_idx": pos,
            "train_label": 1,
            "mzl_label": 1,
            "status": 1,
        }
        for line in range(lines)
        for pos in range(4)
    ]
    return prepare_transliteration(pd.DataFrame(rows), {})


def _probability(rows: list[int], shape=(40, 60)) -> np.ndarray:
    probability = np.zeros(shape, np.float32)
    for row in rows:
        probability[row, 5:55] = 0.9
    return probability


@pytest.mark.parametrize("tl_lines", [3, 5, 2])
def test_more_or_fewer_detected_lines_than_transliteration_lines(tl_lines):
    grid = MapGrid(32, 113)
    hypotheses, assigned = hypotheses_from_probability(
        _probability([5, 10, 15, 20, 25, 30][:3]), grid, (1500, 2100), _transliteration(tl_lines)
    )
    assert len(hypotheses) == 3 and len(assigned) == 3
    valid = assigned[assigned >= 0]
    assert set(valid.tolist()) <= set(range(tl_lines))
    assert (np.diff(valid) >= 0).all(), "assignment keeps the top-to-bottom order"
    if tl_lines == 3:
        assert assigned.tolist() == [0, 1, 2]


def test_no_transliteration_and_empty_maps():
    grid = MapGrid(32, 113)
    hypotheses, assigned = hypotheses_from_probability(
        _probability([5, 15]), grid, (1500, 2100), None
    )
    assert len(hypotheses) == 2 and assigned.tolist() == [-1, -1]
    empty, assigned = hypotheses_from_probability(
        np.zeros((40, 60), np.float32), grid, (1500, 2100), _transliteration(3)
    )
    assert len(empty) == 0 and assigned.shape == (0,)
    post = LinePostprocess(threshold=0.95)
    none, _ = hypotheses_from_probability(_probability([5]), grid, (1500, 2100), None, post)
    assert len(none) == 0, "cells below the threshold are not on a line"


def test_a_transliteration_that_cannot_fit_the_view_is_not_used(caplog):
    """24 lines cannot fit a view 1500 px high (0.49 sign heights each): the three lines on the
    map are found as without a transliteration and left unassigned, with a warning."""
    from cuneidet.lines.predict import transliteration_fits

    grid, size = MapGrid(32, 113), (1500, 2100)
    assert transliteration_fits(_transliteration(23), size)
    assert not transliteration_fits(_transliteration(24), size)
    probability = _probability([5, 15, 25])
    with caplog.at_level("WARNING", logger="cuneidet.lines.predict"):
        hypotheses, assigned = hypotheses_from_probability(
            probability, grid, size, _transliteration(24)
        )
    plain, _ = hypotheses_from_probability(probability, grid, size, None)
    assert len(hypotheses) == len(plain) == 3 and assigned.tolist() == [-1, -1, -1]
    assert "24 transliteration lines cannot fit a view 1500 px high" in caplog.text
    _, fitting = hypotheses_from_probability(probability, grid, size, _transliteration(3))
    assert fitting.tolist() == [0, 1, 2]


def test_detected_lengths_extent_and_votes():
    from cuneidet.lines.predict import detected_lengths

    hypotheses, _ = hypotheses_from_probability(
        _probability([5, 15]), MapGrid(32, 113), (1500, 2100), None
    )
    extent = detected_lengths(hypotheses, "extent")
    assert extent == pytest.approx([(line.x_max - line.x_min) / 128 for line in hypotheses.lines])
    assert detected_lengths(hypotheses, "votes") == pytest.approx(
        [line.votes for line in hypotheses.lines]
    )
    with pytest.raises(ConfigError, match="unknown line length"):
        detected_lengths(hypotheses, "pixels")


def _save_checkpoint(path, overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from cuneidet.config import config_dir
    from cuneidet.utils.instantiate import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    module = instantiate(cfg.model)
    config = OmegaConf.to_container(cfg.model, resolve=True)
    torch.save({"state_dict": module.state_dict(), "cuneidet": {"model_config": config}}, path)
    return path


def test_checkpoint_kinds_are_not_mixed_up(tmp_path):
    from cuneidet.lines.module import LineModule, load_line_module
    from cuneidet.models.checkpoint import load_module

    detector = _save_checkpoint(tmp_path / "detector.ckpt", [])
    lines = _save_checkpoint(tmp_path / "lines.ckpt", ["model=line_net"])
    assert isinstance(load_line_module(str(lines)), LineModule)
    with pytest.raises(ConfigError, match="not a line network"):
        load_line_module(str(detector))
    with pytest.raises(ConfigError, match="not a sign detector"):
        load_module(lines)


def test_lines_beyond_the_transliteration_are_the_weakest_dropped():
    """With 3 transliteration lines and max_extra_lines=1, the 4 best-supported of 5 lines stay:
    long confident lines beat a short faint one (damage, a museum number)."""
    from cuneidet.lines.predict import line_support

    probability = _probability([5, 10, 15])
    probability[20, 20:32] = 0.8  # short: 12 cells
    probability[25, 20:40] = 0.75  # longer but fainter: keeps more support than row 20
    grid = MapGrid(32, 113)
    text = _transliteration(3)
    everything, _ = hypotheses_from_probability(
        probability, grid, (1500, 2100), text, LinePostprocess(max_extra_lines=-1)
    )
    assert len(everything) == 5
    support = line_support(everything, probability)
    extents = np.array([(line.x_max - line.x_min) / 128 for line in everything.lines])
    # mean p(line) under the polyline (whose ends reach just past the cells) times the extent
    mean_probability = support / extents
    assert mean_probability[:3] == pytest.approx([0.9] * 3, rel=0.05)
    assert (mean_probability[3:] <= [0.8, 0.75]).all() and (mean_probability[3:] > 0.6).all()
    assert support[:3].min() > support[4] > support[3]
    assert [line.support for line in everything.lines] == pytest.approx(support.tolist())
    kept, assigned = hypotheses_from_probability(probability, grid, (1500, 2100), text)
    assert len(kept) == 4 and len(assigned) == 4
    rows = [round(float(grid.to_map(line.polyline_y_at(1000.0)))) for line in kept.lines]
    assert rows == [5, 10, 15, 25]
    assert [line.index for line in kept.lines] == [0, 1, 2, 3]
    assert assigned[:3].tolist() == [0, 1, 2]
    untransliterated, _ = hypotheses_from_probability(probability, grid, (1500, 2100), None)
    assert len(untransliterated) == 5, "without a transliteration no line count is known"


def test_init_from_loads_a_line_network(tmp_path):
    from cuneidet.models.checkpoint import load_weights
    from cuneidet.utils.instantiate import instantiate

    lines = _save_checkpoint(tmp_path / "lines.ckpt", ["model=line_net"])
    detector = _save_checkpoint(tmp_path / "detector.ckpt", [])
    saved = torch.load(lines, weights_only=False)["state_dict"]
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cuneidet.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["model=line_net"])
    fresh = instantiate(cfg.model)
    load_weights(fresh, lines)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, saved[name]), name
    with pytest.raises(ConfigError, match="does not match"):
        load_weights(fresh, detector)


def test_excluded_training_tablets_leave_train_and_val_but_not_the_split(tmp_path):
    from cuneidet.lines.data import LineDataModule
    from tests.synthetic_csdd import make_synthetic_csdd

    data = make_synthetic_csdd(tmp_path / "data", train_tablets=4, test_tablets=2, with_lines=True)

    def names(**options):
        module = LineDataModule(data_dir=str(data), val_fraction=0.25, progress=False, **options)
        module.setup()
        splits = (module.train_samples, module.val_samples, module.test_samples)
        return [{s.tablet for s in samples} for samples in splits]

    train, val, test = names()
    assert len(train) == 3 and len(val) == 1 and len(test) == 2
    left_out = sorted(train)[0]
    train_x, val_x, test_x = names(exclude_train_tablets=[left_out, *val])
    assert train_x == train - {left_out} and val_x == set(), "the split itself is unchanged"
    assert test_x == test
    assert names(exclude_train_tablets=sorted(test))[2] == test, "the test split is never filtered"


def test_postprocess_settings_reach_their_own_fields(tmp_path):
    """Every post-processing setting of model=line_net lands in its LinePostprocess field, and a
    checkpoint written before a setting existed gets that setting's default."""
    import dataclasses

    from cuneidet.lines.module import load_line_module

    settings = {
        "threshold": 0.6,
        "method": "reference",
        "assignment": "order",
        "line_length": "votes",
        "variance": 3.0,
        "max_extra_lines": 2,
        "text_length": "visible",
        "rescale": "max",
    }
    assert set(settings) == {f.name for f in dataclasses.fields(LinePostprocess)}
    overrides = ["model=line_net"] + [f"model.{k}={v}" for k, v in settings.items()]
    module = load_line_module(str(_save_checkpoint(tmp_path / "new.ckpt", overrides)))
    assert dataclasses.asdict(module.post) == settings
    checkpoint = _save_checkpoint(tmp_path / "old.ckpt", ["model=line_net"])
    saved = torch.load(checkpoint, weights_only=False)
    for key in ("text_length", "rescale"):  # as in checkpoints older than these settings
        del saved["cuneidet"]["model_config"][key]
    torch.save(saved, checkpoint)
    assert load_line_module(str(checkpoint)).post == LinePostprocess()


@pytest.mark.parametrize("stride", [8, 16])
def test_every_seg_net_parameter_gets_a_gradient(stride):
    """DDP stops on parameters without a gradient: the FPN levels the head does not read keep
    no output convolution, and checkpoints that still hold one load."""
    from cuneidet.lines.networks import LineSegNet

    net = LineSegNet(stride=stride, channels=8)
    net(torch.randn(1, 1, 96, 96)).sum().backward()
    assert [name for name, p in net.named_parameters() if p.grad is None] == []
    old = net.state_dict()
    old["fpn.fpn.layer_blocks.1.0.weight"] = torch.zeros(8, 8, 3, 3)  # as in older checkpoints
    old["fpn.fpn.layer_blocks.1.0.bias"] = torch.zeros(8)
    fresh = LineSegNet(stride=stride, channels=8)
    fresh.load_state_dict(old, strict=True)
    torch.testing.assert_close(fresh.head[0].weight, net.head[0].weight)
