"""SignDetector: paper configuration, reference weights, loss, decoding, torchvision variants."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from cuneidet.errors import ConfigError
from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.detector import SignDetector
from cuneidet.models.heads import RetinaHead, SSDHead
from cuneidet.models.necks import SUPPORTED_BACKBONES, PaperFPN, TorchvisionFPN
from cuneidet.models.reference_weights import (
    ReferenceWeightsError,
    load_reference_weights,
    paper_detector,
)


@pytest.fixture(scope="module")
def paper() -> SignDetector:
    torch.manual_seed(0)
    return paper_detector()


def _small_detector(head: SSDHead | RetinaHead | None = None, num_classes: int = 5) -> SignDetector:
    head = head or SSDHead(num_convs=1, channels=32)
    return SignDetector(PaperFPN(out_channels=32), head, AnchorGenerator(), num_classes)


# ----------------------------------------------------------------------------- paper layout


def test_paper_parameter_count(paper: SignDetector) -> None:
    assert abs(paper.num_parameters() - 13.4e6) / 13.4e6 < 0.01
    heads = sum(p.numel() for n, p in paper.named_parameters() if "_head." in n)
    assert abs(heads - 11.47e6) / 11.47e6 < 0.01


def test_paper_state_dict_keys(paper: SignDetector) -> None:
    prefixes = {".".join(k.split(".")[:2]) for k in paper.state_dict()}
    assert prefixes == {
        "fpn.features",
        "fpn.conv6",
        "fpn.toplayer",
        *(f"{h}_head.{i}" for h in ("loc", "cls") for i in (0, 2, 4, 6, 8)),
    }
    keys = paper.state_dict().keys()
    assert "fpn.features.3.mobile_block.2.conv.7.num_batches_tracked" in keys
    assert tuple(paper.state_dict()["cls_head.8.weight"].shape) == (2880, 256, 3, 3)
    assert tuple(paper.state_dict()["loc_head.8.weight"].shape) == (48, 256, 3, 3)


def test_paper_output_shapes_1024(paper: SignDetector) -> None:
    paper.eval()
    with torch.no_grad():
        loc, cls = paper(torch.zeros(1, 1, 1024, 1024))
    paper.train()
    assert tuple(loc.shape) == (1, 15360, 4)
    assert tuple(cls.shape) == (1, 15360, 240)


def test_flattening_order_matches_reference() -> None:
    det = _small_detector().eval()
    images = torch.randn(2, 1, 96, 160)
    with torch.no_grad():
        loc, cls = det(images)
        p5, _ = det.fpn(images)
        raw = det.cls_head(p5)  # [N, A*C, h, w]
    a, c = det.num_anchors, det.num_classes
    y, x, k = 1, 3, 7
    w = p5.shape[-1]
    index = (y * w + x) * a + k
    assert torch.allclose(cls[1, index], raw[1, k * c : (k + 1) * c, y, x])
    assert loc.shape[1] == det.anchors_for((96, 160)).shape[0]


def test_anchor_levels_must_match_neck() -> None:
    with pytest.raises(ConfigError, match="one size per level"):
        SignDetector(PaperFPN(with_p4=True), SSDHead(), AnchorGenerator(), 240)


def test_feature_sizes_match_real_maps() -> None:
    det = _small_detector()
    det.eval()
    with torch.no_grad():
        maps = det.fpn(torch.zeros(1, 1, 333, 517))
    assert det.feature_sizes((333, 517)) == [tuple(m.shape[-2:]) for m in maps]


# ----------------------------------------------------------------------------- weights


def _reference_state_dict(paper: SignDetector) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    state = {}
    for key, value in paper.state_dict().items():
        if value.is_floating_point():
            state[f"module.{key}"] = torch.randn(value.shape, generator=gen)
        else:
            state[f"module.{key}"] = torch.full_like(value, 7)
    return state


def test_reference_weights_load_strictly(paper: SignDetector, tmp_path: Path) -> None:
    state = _reference_state_dict(paper)
    path = tmp_path / "fpn_net_vA.pth"
    torch.save(state, path)
    load_reference_weights(paper, path)
    loaded = paper.state_dict()
    assert torch.equal(loaded["cls_head.8.bias"], state["module.cls_head.8.bias"])
    assert torch.equal(
        loaded["fpn.features.1.mobile_block.0.conv.0.weight"],
        state["module.fpn.features.1.mobile_block.0.conv.0.weight"],
    )
    assert loaded["fpn.features.0.1.num_batches_tracked"].item() == 7


def test_reference_weights_missing_and_renamed_keys(paper: SignDetector) -> None:
    state = _reference_state_dict(paper)
    del state["module.fpn.conv6.bias"]
    state["module.fpn.features.1.block.0.conv.0.weight"] = state.pop(
        "module.fpn.features.1.mobile_block.0.conv.0.weight"
    )
    with pytest.raises(ReferenceWeightsError) as err:
        load_reference_weights(paper, state)
    message = str(err.value)
    assert "missing keys (2)" in message and "fpn.conv6.bias" in message
    assert "unexpected keys (1)" in message and "fpn.features.1.block.0.conv.0.weight" in message


def test_reference_weights_shape_mismatch(paper: SignDetector) -> None:
    state = _reference_state_dict(paper)
    state["module.cls_head.8.weight"] = torch.zeros(12 * 241, 256, 3, 3)
    with pytest.raises(ReferenceWeightsError, match=r"cls_head\.8\.weight: checkpoint"):
        load_reference_weights(paper, state)
    before = paper.state_dict()["cls_head.8.weight"].clone()
    load_reference_weights(paper, state, strict=False)
    assert torch.equal(paper.state_dict()["cls_head.8.weight"], before)
    assert torch.equal(paper.state_dict()["loc_head.8.weight"], state["module.loc_head.8.weight"])


def test_reference_weights_missing_file(paper: SignDetector, tmp_path: Path) -> None:
    with pytest.raises(ReferenceWeightsError, match="not found"):
        load_reference_weights(paper, tmp_path / "nope.pth")


# ----------------------------------------------------------------------------- decoding

IMAGE = (256, 256)  # P5 8x8, P6 4x4 -> 960 anchors


def _crafted_outputs(det: SignDetector) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    anchors = det.anchors_for(IMAGE)
    num = anchors.shape[0]
    loc = torch.zeros(1, num, 4)
    cls = torch.zeros(1, num, 5)
    cls[..., 0] = 8.0  # everything is confidently background
    i0, i1, i2, i3 = 0, 1, 7 * 12, 9  # i0, i1, i3 share cell (0, 0); i2 is cell (0, 7)
    cls[0, i0, 3], cls[0, i0, 2] = 8.0, 7.0  # class 3 ~0.5 and class 2 ~0.18
    cls[0, i1, 3] = 6.0  # same class, IoU 0.63 with i0 -> suppressed
    cls[0, i2, 3] = 7.0  # far away, kept
    cls[0, i3, 4] = 3.0  # p ~ 0.0067, below 0.01
    return loc, cls, anchors


def test_postprocess_per_class_boxes_and_thresholds() -> None:
    det = _small_detector()
    loc, cls, anchors = _crafted_outputs(det)
    (out,) = det.postprocess(loc, cls, IMAGE)
    assert out["labels"].dtype == torch.int64
    assert out["labels"].tolist() == [3, 3, 2]
    assert torch.allclose(out["boxes"], anchors[[0, 84, 0]])
    assert torch.all(out["scores"] > 0.01)
    assert torch.all(out["scores"][:-1] >= out["scores"][1:])
    probs = cls.softmax(-1)[0]
    assert torch.allclose(out["scores"], probs[[0, 84, 0], [3, 3, 2]])

    (low,) = det.postprocess(loc, cls, IMAGE, score_thresh=0.005)
    assert sorted(low["labels"].tolist()) == [2, 3, 3, 4]
    (high,) = det.postprocess(loc, cls, IMAGE, score_thresh=0.3)
    assert high["labels"].tolist() == [3]
    (no_nms,) = det.postprocess(loc, cls, IMAGE, nms_thresh=0.99)
    assert len(no_nms["labels"]) == 4


def test_postprocess_optional_caps() -> None:
    det = _small_detector()
    loc, cls, _ = _crafted_outputs(det)
    (agnostic,) = det.postprocess(loc, cls, IMAGE, class_agnostic_nms=0.5)
    assert agnostic["labels"].tolist() == [3, 3]
    (capped,) = det.postprocess(loc, cls, IMAGE, max_detections=1)
    assert capped["labels"].tolist() == [3] and len(capped["boxes"]) == 1
    (topk,) = det.postprocess(loc, cls, IMAGE, pre_nms_topk=2)
    assert len(topk["labels"]) == 2


def test_postprocess_wrong_image_size_is_clear() -> None:
    det = _small_detector()
    loc, cls, _ = _crafted_outputs(det)
    with pytest.raises(ValueError, match="anchors"):
        det.postprocess(loc, cls, (512, 512))


def test_postprocess_many_anchors_is_fast() -> None:
    det = _small_detector(num_classes=240)
    torch.manual_seed(0)
    num = det.anchors_for((1024, 1024)).shape[0]
    cls = torch.randn(1, num, 240) * 5
    (out,) = det.postprocess(torch.randn(1, num, 4) * 0.1, cls, (1024, 1024))
    assert len(out["boxes"]) > 1000
    assert int(out["labels"].min()) >= 1 and int(out["labels"].max()) <= 239


def test_retina_head_postprocess_labels() -> None:
    det = _small_detector(RetinaHead(num_convs=1, channels=32, norm="group"))
    assert det.cls_channels == 4
    num = det.anchors_for(IMAGE).shape[0]
    cls = torch.full((1, num, 4), -10.0)
    cls[0, 5, 1] = 5.0  # column 1 = class 2
    (out,) = det.postprocess(torch.zeros(1, num, 4), cls, IMAGE)
    assert out["labels"].tolist() == [2]


def test_detect_restores_mode() -> None:
    det = _small_detector()
    det.train()
    results = det.detect(torch.randn(2, 1, 96, 128), score_thresh=0.0, max_detections=5)
    assert det.training
    assert len(results) == 2 and all(len(r["boxes"]) == 5 for r in results)
    assert not results[0]["boxes"].requires_grad


# ----------------------------------------------------------------------------- loss


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[0.0, 8.0, 128.0, 104.0]]), "labels": torch.tensor([2])}]


def test_loss_drops_out_of_range_labels() -> None:
    det = _small_detector()
    images = torch.randn(1, 1, 128, 128)
    loc, cls = det(images)
    base = det.loss(loc, cls, _targets(), (128, 128))
    extra = [
        {
            "boxes": torch.tensor([[0.0, 8.0, 128.0, 104.0], [0.0, 0.0, 128.0, 128.0]]),
            "labels": torch.tensor([2, 7]),  # 7 >= num_classes: dropped
        }
    ]
    dropped = det.loss(loc, cls, extra, (128, 128))
    assert base["num_pos"].item() > 0
    assert dropped["loss"].item() == pytest.approx(base["loss"].item())


def test_loss_line_map_and_empty_targets() -> None:
    det = _small_detector()
    loc, cls = det(torch.randn(2, 1, 128, 128))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    line_maps = [torch.ones(128, 128, dtype=torch.bool), None]
    out = det.loss(loc, cls, [_targets()[0], empty], (128, 128), line_maps=line_maps)
    assert torch.isfinite(out["loss"])
    anchors = det.anchors_for((128, 128))
    loc_t, cls_t = det.build_targets([_targets()[0], empty], anchors, line_maps)
    assert set(cls_t[0].tolist()) == {-1, 0, 2}
    # everything is on a line: only anchors with IoU in [0.35, 0.5) remain background
    iou = box_iou(anchors, _targets()[0]["boxes"])[:, 0]
    assert torch.all((iou[cls_t[0] == 0] >= 0.35) & (iou[cls_t[0] == 0] < 0.5))
    assert torch.all(iou[cls_t[0] == -1] < 0.35)
    assert set(cls_t[1].tolist()) == {0}
    assert torch.all(loc_t[cls_t <= 0] == 0)


@pytest.mark.parametrize("head_name", ["ssd", "retina"])
@pytest.mark.parametrize("backbone", SUPPORTED_BACKBONES)
def test_torchvision_variants_forward_and_backprop(backbone: str, head_name: str) -> None:
    torch.manual_seed(0)
    head = (
        SSDHead(num_convs=1, channels=32)
        if head_name == "ssd"
        else RetinaHead(num_convs=1, channels=32, norm="group")
    )
    det = SignDetector(
        TorchvisionFPN(backbone, out_channels=32),
        head,
        AnchorGenerator(sizes=(64, 128, 256)),
        num_classes=6,
    )
    images = torch.randn(1, 1, 128, 160)
    loc, cls = det(images)
    num = (8 * 10 + 4 * 5 + 2 * 3) * 12
    assert tuple(loc.shape) == (1, num, 4)
    assert tuple(cls.shape) == (1, num, head.cls_outputs(6))
    targets = [{"boxes": torch.tensor([[30.0, 30.0, 94.0, 94.0]]), "labels": torch.tensor([2])}]
    out = det.loss(loc, cls, targets, (128, 160))
    assert out["num_pos"].item() > 0
    out["loss"].backward()
    stem = next(p for p in det.fpn.body.parameters())
    assert stem.grad is not None and torch.isfinite(stem.grad).all()
    assert det.cls_head[-1].weight.grad is not None


def test_detector_overfits_a_tiny_image() -> None:
    torch.manual_seed(0)
    det = _small_detector(SSDHead(num_convs=1, channels=64), num_classes=4)
    images = torch.randn(1, 1, 128, 128)
    optimizer = torch.optim.Adam(det.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loc, cls = det(images)
        out = det.loss(loc, cls, _targets(), (128, 128))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert out["num_pos"].item() > 0
    assert losses[-1] < 0.5 * losses[0]
