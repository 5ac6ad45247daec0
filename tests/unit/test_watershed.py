"""Deep Watershed head: energy targets, vectorised component decoding, loss, training, configs."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from cuneidet.errors import ConfigError
from cuneidet.models.efficientnet_lite import EfficientNetLiteFPN
from cuneidet.models.necks import PaperFPN
from cuneidet.models.watershed import (
    WatershedDetector,
    WatershedHead,
    decode_energy,
    energy_targets,
)

K = 10


def _boxes(*rows: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


# -- energy targets ----------
def test_one_box_peaks_at_its_centre_and_falls_to_zero_outside_its_marker():
    # a 64 x 48 box centred at (100, 60) on a stride-8 grid: centre cell (7, 12)
    box = _boxes((76, 28, 124, 92))
    level, owner = energy_targets(box, (20, 30), 8, K, marker_scale=0.8)
    assert level.max() == K - 1 and level[7, 12] == K - 1
    assert (owner[level > 0] == 0).all() and (owner[level == 0] == -1).all()
    # levels fall monotonically along the row and the column through the centre
    row = level[7, 12:].tolist()
    assert row == sorted(row, reverse=True) and row[-1] == 0
    col = level[7:, 12].tolist()
    assert col == sorted(col, reverse=True)
    # the marker is 0.8 of the box: nothing outside the box, cells near its rim are background
    ys, xs = torch.nonzero(level, as_tuple=True)
    centres_x, centres_y = (xs + 0.5) * 8, (ys + 0.5) * 8
    assert centres_x.min() > 76 + 0.1 * 48 - 1e-3 and centres_x.max() < 124 - 0.1 * 48 + 1e-3
    assert centres_y.min() > 28 + 0.1 * 64 - 1e-3 and centres_y.max() < 92 - 0.1 * 64 + 1e-3


def test_touching_boxes_keep_a_background_gap_and_one_peak_each():
    # two 48 x 48 boxes sharing the edge x = 96
    boxes = _boxes((48, 40, 96, 88), (96, 40, 144, 88))
    level, owner = energy_targets(boxes, (16, 24), 8, K, marker_scale=0.8)
    assert set(owner[level > 0].tolist()) == {0, 1}
    # the cells either side of the shared edge (columns 11 and 12) are background on the centre row
    assert level[8, 11] == 0 and level[8, 12] == 0
    # each object has its own top level
    assert (level[owner == 0] == K - 1).any() and (level[owner == 1] == K - 1).any()


def test_overlapping_boxes_give_each_cell_to_the_higher_energy():
    boxes = _boxes((40, 40, 120, 120), (100, 40, 180, 120))  # 20-px overlap
    level, owner = energy_targets(boxes, (20, 28), 8, K, marker_scale=1.0)
    # column 13 (x centre 108) is nearer the second box's centre (140) than... no: |108-80| = 28,
    # |108-140| = 32: the first box wins it; column 14 (x = 116): 36 vs 24, the second wins
    assert owner[10, 13] == 0 and owner[10, 14] == 1
    assert level[10, 13] > 0 and level[10, 14] > 0


def test_objects_smaller_than_the_stride_still_get_a_peak():
    tiny = _boxes((33, 33, 36, 35))  # 3 x 2 px at stride 8
    level, owner = energy_targets(tiny, (8, 8), 8, K)
    assert level.max() == K - 1 and (owner >= 0).sum() >= 1
    assert level[4, 4] == K - 1  # the cell whose centre (36, 36) is nearest


def test_no_boxes_give_an_empty_map():
    level, owner = energy_targets(torch.zeros((0, 4)), (5, 7), 8, K)
    assert level.shape == (5, 7) and level.sum() == 0 and (owner == -1).all()


# -- decoding ----------
def _perfect_maps(boxes: torch.Tensor, labels: torch.Tensor, grid, stride, num_fg):
    """Energy/class/size maps a perfect network would output for ``boxes``."""
    level, owner = energy_targets(boxes, grid, stride, K)
    energy = torch.nn.functional.one_hot(level, K).permute(2, 0, 1).float()
    classes = torch.full((num_fg, *grid), 1.0 / max(num_fg, 1))
    size = torch.zeros((2, *grid))
    on = owner >= 0
    if num_fg:
        classes[:, on] = torch.nn.functional.one_hot(labels[owner[on]] - 1, num_fg).T.float()
    sides = (boxes[:, 2:] - boxes[:, :2]) / stride
    size[:, on] = sides[owner[on]].log().T
    return energy, classes, size


def test_synthetic_energy_maps_decode_into_one_box_per_object():
    # a 3 x 4 grid of touching 48 x 64 "signs" (12 objects) with classes 1..3
    rows = [(x, y, x + 48, y + 64) for y in (16, 80, 144) for x in (16, 64, 112, 160)]
    boxes = _boxes(*rows)
    labels = torch.tensor([1 + i % 3 for i in range(len(rows))])
    energy, classes, size = _perfect_maps(boxes, labels, (28, 28), 8, 3)
    head = WatershedHead(levels=K, cut_level=5, top_k=1)
    dets = decode_energy(energy, classes, size, 8, head, score_thresh=0.0)
    assert len(dets["boxes"]) == 12
    iou = box_iou(dets["boxes"], boxes)
    best, match = iou.max(dim=1)
    assert best.min() > 0.8 and len(set(match.tolist())) == 12
    assert torch.equal(dets["labels"], labels[match])
    assert torch.allclose(dets["scores"], torch.ones(12))


def test_decoding_top_k_classes_centre_vote_and_min_pixels():
    boxes = _boxes((16, 16, 80, 80), (120, 120, 128, 128))  # a big object and a tiny one
    labels = torch.tensor([2, 1])
    energy, classes, size = _perfect_maps(boxes, labels, (20, 20), 8, 4)
    head = WatershedHead(levels=K, cut_level=5, top_k=3)
    dets = decode_energy(energy, classes, size, 8, head, score_thresh=-1.0)
    assert len(dets["boxes"]) == 6  # 2 components x 3 classes
    centre = WatershedHead(levels=K, cut_level=5, top_k=1, class_from="centre")
    dets = decode_energy(energy, classes, size, 8, centre, score_thresh=0.0)
    assert sorted(dets["labels"].tolist()) == [1, 2]
    # the tiny object's component has a single cell: min_pixels=2 drops it
    strict = WatershedHead(levels=K, cut_level=5, top_k=1, min_pixels=2)
    dets = decode_energy(energy, classes, size, 8, strict, score_thresh=0.0)
    assert dets["labels"].tolist() == [2]


def test_localiser_decoding_has_no_class_map_and_empty_maps_give_nothing():
    boxes = _boxes((16, 16, 80, 80))
    energy, classes, size = _perfect_maps(boxes, torch.tensor([1]), (12, 12), 8, 0)
    head = WatershedHead(levels=K, cut_level=5)
    dets = decode_energy(energy, classes, size, 8, head)
    assert dets["labels"].tolist() == [1] and box_iou(dets["boxes"], boxes).item() > 0.9
    background = torch.zeros((K, 12, 12))
    background[0] = 1.0
    dets = decode_energy(background, classes, size, 8, head)
    assert dets["boxes"].shape == (0, 4) and dets["labels"].dtype == torch.long


def test_decoding_a_dense_hd_map_is_fast_enough_to_time():
    # an HD input at stride 8 (240 x 135 cells) full of signs: one call, vectorised, < 2 s
    torch.manual_seed(0)
    xs, ys = torch.meshgrid(torch.arange(0, 1900, 40), torch.arange(0, 1060, 48), indexing="xy")
    boxes = torch.stack([xs, ys, xs + 36, ys + 44], dim=-1).reshape(-1, 4).float()
    energy, classes, size = _perfect_maps(
        boxes, torch.ones(len(boxes), dtype=torch.long), (135, 240), 8, 0
    )
    dets = decode_energy(energy, classes, size, 8, WatershedHead(levels=K, cut_level=5))
    assert len(dets["boxes"]) == len(boxes)


# -- the detector ----------
def _detector(num_classes: int = 4, stride: int | None = None) -> WatershedDetector:
    torch.manual_seed(0)
    fpn = EfficientNetLiteFPN(levels=[8, 16, 32], out_channels=32, pretrained=False)
    head = WatershedHead(levels=K, cut_level=5, num_convs=1, channels=32, stride=stride)
    return WatershedDetector(fpn, head, num_classes=num_classes)


def test_forward_shapes_stride_choice_and_config_errors():
    det = _detector(num_classes=4, stride=16)
    energy, classes, size = det(torch.zeros(2, 1, 96, 128))
    assert energy.shape == (2, K, 6, 8) and classes.shape == (2, 3, 6, 8)
    assert size.shape == (2, 2, 6, 8) and det.strides == [8, 16, 32]
    localiser = _detector(num_classes=2)
    energy, classes, size = localiser(torch.zeros(1, 1, 64, 64))
    assert energy.shape[-2:] == (8, 8) and classes.shape[1] == 0 and localiser.cls_head is None
    with pytest.raises(ConfigError, match="stride=4"):
        _detector(stride=4)
    with pytest.raises(ConfigError, match="anchors=null"):
        WatershedDetector(PaperFPN(out_channels=16), WatershedHead(), anchors={"sizes": [1]})
    with pytest.raises(ConfigError, match="cut_level"):
        WatershedHead(levels=10, cut_level=10)


def _targets():
    return [
        {
            "boxes": _boxes((8, 8, 40, 48), (48, 8, 88, 48), (16, 60, 60, 100)),
            "labels": torch.tensor([1, 2, 3]),
        },
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_loss_parts_line_map_ignore_and_gradients():
    det = _detector()
    images = torch.randn(2, 1, 128, 128)
    out = det.loss(*det(images), _targets(), (128, 128))
    assert set(out) >= {"loss", "energy_loss", "cls_loss", "size_loss", "loc_loss", "num_pos"}
    assert out["num_pos"] > 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert det.cls_head[-1].weight.grad is not None and det.size_head[-1].weight.grad is not None
    # background cells on a text line are not taught as background
    grid = (16, 16)
    line = torch.zeros(128, 128, dtype=torch.bool)
    line[100:120, :] = True
    _, _, _, valid = det.build_targets(_targets(), grid, torch.device("cpu"), [line, line])
    assert not valid[1, 12:15].any() and valid[1, :12].all()
    with pytest.raises(ValueError, match="stride 8"):
        det.loss(*det(images), _targets(), (64, 64))


def test_the_detector_learns_to_find_blobs():
    # bright squares on noise: after a short training the decoded boxes match them
    torch.manual_seed(1)
    image = torch.randn(1, 1, 128, 128) * 0.05
    boxes = _boxes((10, 12, 42, 44), (60, 14, 92, 46), (30, 70, 62, 102), (84, 78, 116, 110))
    for x0, y0, x1, y1 in boxes.int().tolist():
        image[0, 0, y0:y1, x0:x1] += 0.5
    targets = [{"boxes": boxes, "labels": torch.ones(4, dtype=torch.long)}]
    det = _detector(num_classes=2)
    optimizer = torch.optim.Adam(det.parameters(), lr=3e-3)
    for _ in range(100):
        out = det.loss(*det(image), targets, (128, 128))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    dets = det.detect(image, score_thresh=0.2)[0]
    iou = box_iou(dets["boxes"], boxes)
    assert len(dets["boxes"]) == 4 and (iou.max(dim=0).values > 0.5).all()
    assert det.training  # detect restores the mode


def test_eval_overrides_of_the_decoding_are_checked_and_applied():
    from types import SimpleNamespace

    from cuneidet.models.checkpoint import set_watershed
    from cuneidet.models.heads import SSDHead

    det = _detector(num_classes=2)
    module = SimpleNamespace(detector=SimpleNamespace(localiser=det))
    set_watershed(module, {"cut_level": 3, "min_pixels": 2}, "x.ckpt")
    assert det.head.cut_level == 3 and det.head.min_pixels == 2
    with pytest.raises(ConfigError, match="cut_level"):
        set_watershed(module, {"cut_level": K}, "x.ckpt")
    with pytest.raises(ConfigError, match=r"watershed\.levels is unknown"):
        set_watershed(module, {"levels": 4}, "x.ckpt")
    anchors = SimpleNamespace(detector=SimpleNamespace(head=SSDHead()))
    with pytest.raises(ConfigError, match=r"apply to watershed heads; x\.ckpt has a SSDHead"):
        set_watershed(anchors, {"cut_level": 3}, "x.ckpt")


def test_an_expected_energy_cut_keeps_cells_the_argmax_loses():
    # one object whose centre cells hesitate between level 0 and level 9: argmax says background
    # on two of them, the expected level (4.5 > 3) keeps them
    energy = torch.zeros((K, 6, 6))
    energy[0] = 1.0
    energy[:, 2:4, 2:4] = 0.0
    energy[9, 2:4, 2:4] = 1.0
    energy[:, 2, 2:4] = 0.0
    energy[0, 2, 2:4], energy[9, 2, 2:4] = 0.55, 0.45
    size = torch.zeros((2, 6, 6))
    classes = torch.zeros((0, 6, 6))
    argmax = WatershedHead(levels=K, cut_level=3)
    expected = WatershedHead(levels=K, cut_level=3, cut_on="expected")
    one = decode_energy(energy, classes, size, 8, argmax)["boxes"]
    other = decode_energy(energy, classes, size, 8, expected)["boxes"]
    assert len(one) == len(other) == 1
    # the component's mean row moves up by the two hesitant cells
    assert (other[0, 1] + other[0, 3]) / 2 < (one[0, 1] + one[0, 3]) / 2
    with pytest.raises(ConfigError, match="cut_on"):
        WatershedHead(cut_on="mean")
