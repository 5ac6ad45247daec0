"""Anchors (§1.4), box coding and matching (§1.5), "+1" NMS."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import nms

from cuneidet.errors import ConfigError
from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.box_coder import decode, encode, match, nms_plus_one

P5_WH = [
    (181, 91),
    (228, 114),
    (287, 144),
    (128, 128),
    (161, 161),
    (203, 203),
    (181, 91),
    (228, 114),
    (287, 144),
    (222, 74),
    (279, 93),
    (352, 117),
]


def _wh(anchors: torch.Tensor) -> torch.Tensor:
    return anchors[..., 2:] - anchors[..., :2]


def _ctr(anchors: torch.Tensor) -> torch.Tensor:
    return (anchors[..., :2] + anchors[..., 2:]) / 2


def test_anchor_count_and_cell_sizes() -> None:
    gen = AnchorGenerator()
    assert gen.num_anchors == 12
    anchors = gen((512, 512), [(16, 16), (8, 8)])
    assert tuple(anchors.shape) == ((16 * 16 + 8 * 8) * 12, 4)
    p5 = _wh(anchors[:12])
    assert [tuple(round(v) for v in row) for row in p5.tolist()] == P5_WH
    p6 = _wh(anchors[16 * 16 * 12 : 16 * 16 * 12 + 12])
    assert torch.allclose(p6, 2 * p5, atol=1e-3)


def test_anchor_centres_512() -> None:
    anchors = AnchorGenerator()((512, 512), [(16, 16), (8, 8)])
    assert torch.allclose(_ctr(anchors[:12]), torch.tensor([16.0, 16.0]).expand(12, 2))
    # level 0, y = 1, x = 2, anchor 5
    assert torch.allclose(_ctr(anchors[(1 * 16 + 2) * 12 + 5]), torch.tensor([80.0, 48.0]))
    offset = 16 * 16 * 12
    assert torch.allclose(_ctr(anchors[offset]), torch.tensor([32.0, 32.0]))
    assert torch.allclose(_ctr(anchors[offset + (2 * 8 + 7) * 12]), torch.tensor([480.0, 160.0]))


def test_anchor_centres_odd_size() -> None:
    height, width = 500, 700  # P5 16 x 22, P6 8 x 11
    anchors = AnchorGenerator()((height, width), [(16, 22), (8, 11)])
    assert anchors.shape[0] == (16 * 22 + 8 * 11) * 12
    y, x = 3, 21
    got = _ctr(anchors[(y * 22 + x) * 12])
    expected = torch.tensor([(x + 0.5) * width / 22, (y + 0.5) * height / 16])
    assert torch.allclose(got, expected, atol=1e-4)
    last = _ctr(anchors[-1])
    assert torch.allclose(last, torch.tensor([10.5 * 700 / 11, 7.5 * 500 / 8]), atol=1e-4)


def test_anchor_level_mismatch_is_clear() -> None:
    with pytest.raises(ConfigError, match="one size per level"):
        AnchorGenerator()((512, 512), [(32, 32), (16, 16), (8, 8)])


def test_anchor_cache() -> None:
    gen = AnchorGenerator(cache_size=2)
    a = gen((64, 64), [(2, 2), (1, 1)])
    assert gen((64, 64), [(2, 2), (1, 1)]) is a
    gen((96, 96), [(3, 3), (2, 2)])
    gen((128, 128), [(4, 4), (2, 2)])
    assert gen((64, 64), [(2, 2), (1, 1)]) is not a  # evicted, rebuilt
    assert torch.equal(gen((64, 64), [(2, 2), (1, 1)]), a)


def test_encode_decode_round_trip() -> None:
    torch.manual_seed(0)
    anchors = AnchorGenerator()((256, 320), [(8, 10), (4, 5)])
    xy = torch.rand(anchors.shape[0], 2) * 300
    boxes = torch.cat([xy, xy + 10 + torch.rand(anchors.shape[0], 2) * 200], dim=1)
    assert torch.allclose(decode(encode(boxes, anchors), anchors), boxes, atol=1e-3)
    assert torch.allclose(encode(anchors, anchors), torch.zeros_like(anchors), atol=1e-6)


def test_encode_values() -> None:
    anchor = torch.tensor([[0.0, 0.0, 100.0, 50.0]])
    box = torch.tensor([[10.0, 5.0, 210.0, 30.0]])  # ctr (110, 17.5), wh (200, 25)
    expected = torch.tensor([[(110 - 50) / 100, (17.5 - 25) / 50, 0.6931472, -0.6931472]])
    assert torch.allclose(encode(box, anchor), expected, atol=1e-6)


ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],  # IoU 1 with gt 0
        [0.0, 0.0, 10.0, 20.0],  # IoU 0.5 with gt 0
        [0.0, 0.0, 10.0, 21.0],  # IoU 100/210 < 0.5
        [0.0, 0.0, 10.0, 25.0],  # IoU 0.4 (in [0.35, 0.5))
        [100.0, 100.0, 110.0, 110.0],  # no overlap with gt 0; IoU 1 with gt 1
        [200.0, 200.0, 210.0, 210.0],  # no overlap at all
    ]
)


def test_match_threshold_and_labels() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    matched, cls = match(ANCHORS, gt, torch.tensor([5, 7]))
    assert cls.dtype == torch.int64
    assert cls.tolist() == [5, 5, 0, 0, 7, 0]
    assert torch.equal(matched[0], gt[0]) and torch.equal(matched[4], gt[1])


def test_match_label_zero_is_background() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    _, cls = match(ANCHORS, gt, torch.tensor([0, 7]))
    assert cls.tolist() == [0, 0, 0, 0, 7, 0]


def test_match_line_map_ignore() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    line_map = torch.zeros(256, 256, dtype=torch.bool)
    line_map[:, :] = True
    line_map[205, 205] = False  # centre of the last anchor: not on a line
    _, cls = match(ANCHORS, gt, torch.tensor([3]), line_map=line_map)
    # positives stay, IoU in [0.35, 0.5) stays background, IoU < 0.35 on a line is ignored
    assert cls.tolist() == [3, 3, 0, 0, -1, 0]


def test_match_line_map_samples_truncated_centre() -> None:
    anchors = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # centre (4.5, 4.5) -> pixel (4, 4)
    line_map = torch.zeros(16, 16, dtype=torch.bool)
    line_map[4, 4] = True
    _, cls = match(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), line_map=line_map)
    assert cls.tolist() == [-1]
    line_map[4, 4], line_map[5, 5] = False, True
    _, cls = match(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), line_map=line_map)
    assert cls.tolist() == [0]


def test_match_line_map_centres_outside_are_off_line() -> None:
    anchors = torch.tensor([[100.0, 100.0, 110.0, 110.0], [0.0, 0.0, 9.0, 9.0]])
    line_map = torch.ones(16, 16, dtype=torch.bool)  # smaller than the (padded) image
    _, cls = match(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), line_map=line_map)
    assert cls.tolist() == [0, -1]


def test_match_without_ground_truth() -> None:
    matched, cls = match(ANCHORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert cls.tolist() == [0] * 6
    assert torch.equal(matched, ANCHORS)


def test_nms_plus_one_differs_from_continuous() -> None:
    # continuous IoU = 36/126 = 0.286, "+1" IoU = 50/150 = 0.333
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    scores = torch.tensor([0.9, 0.8])
    same = torch.zeros(2, dtype=torch.int64)
    assert nms(boxes, scores, 0.3).tolist() == [0, 1]
    assert nms_plus_one(boxes, scores, same, 0.3).tolist() == [0]
    assert nms_plus_one(boxes, scores, torch.tensor([1, 2]), 0.3).tolist() == [0, 1]
    assert nms_plus_one(boxes, scores, same, 0.34).tolist() == [0, 1]
    assert torch.equal(boxes, torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]]))
