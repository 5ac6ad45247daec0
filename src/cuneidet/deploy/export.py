"""Export a trained detector or two-stage recogniser to ONNX graphs plus a JSON sidecar.

The graphs hold only the networks (dynamic batch, height and width); anchors, decoding, crop
cutting and NMS stay in Python, shared with the PyTorch runtime
(:class:`~cuneidet.models.detector.AnchorDecoding`,
:class:`~cuneidet.models.two_stage.TwoStageDetector`), so both runtimes return the same boxes.
Every graph is checked against PyTorch on a probe input right after export; the files are
written under temporary names and renamed at the end, the sidecar last, so an interrupted export
leaves no half model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cuneidet.deploy.sidecar import (
    FORMAT,
    FORMAT_VERSION,
    GRAPHS,
    NORMALISATION,
    file_sha256,
    graph_path,
    sidecar_path,
)
from cuneidet.errors import ConfigError, ModelFileError
from cuneidet.models.detector import SignDetector
from cuneidet.models.two_stage import TwoStageDetector
from cuneidet.models.watershed import WatershedDetector
from cuneidet.utils.io import output_errors, write_json

log = logging.getLogger(__name__)

#: largest |ONNX Runtime - PyTorch| accepted on the probe input (float32 outputs)
EXPORT_TOLERANCE = 1e-3
#: probe input sizes: detectors see [2, 1, H, W] images, classifiers [4, 1, S, S] crops
_PROBE_SIZE = (160, 224)
_RECOGNISER_KEYS = (
    "top_k",
    "context",
    "crop_size",
    "loc_score_thresh",
    "loc_nms_thresh",
    "max_boxes",
    "crop_batch",
    "tta_contexts",
    "loc_power",
)


class _ProbabilityGraph(nn.Module):
    """``images -> (loc, probs)`` of a :class:`SignDetector` (its :meth:`raw_outputs`)."""

    def __init__(self, detector: SignDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.detector.raw_outputs(images)


def export_onnx(
    detector: SignDetector | TwoStageDetector,
    path: str | Path,
    *,
    inference: Mapping[str, Any] | None = None,
    classes: Mapping[int, Mapping[str, Any]] | None = None,
    source: Mapping[str, Any] | None = None,
    opset: int | None = None,
    scale_auto: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``path`` (``.onnx``), its sidecar ``.json`` and, for a recogniser, the classifier
    graph ``<stem>.classifier.onnx``; returns the sidecar path.

    ``inference`` are the score/NMS settings a runtime starts from, ``classes`` maps train
    labels to ``{"name", "mzl"}`` (optional), ``source`` records provenance (checkpoint,
    commit), ``scale_auto`` the model's calibration of the automatic scale
    (:class:`cuneidet.inference.scale.ScaleSettings` fields, e.g. ``reference_pitch``).
    ``opset`` None uses the exporter's default for the installed torch.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise ConfigError(f"the exported model's file name must end in .onnx, got {path}")
    detector = detector.eval()
    localiser = detector.localiser if isinstance(detector, TwoStageDetector) else detector
    if isinstance(localiser, WatershedDetector):
        raise ConfigError(
            "ONNX export covers anchor heads (ssd, retinanet) only; a watershed head runs from its "
            "checkpoint: cuneidet-predict ckpt_path=<best.ckpt> (PyTorch on CPU or GPU)"
        )
    if isinstance(detector, TwoStageDetector):
        kind = "two_stage"
        nets: dict[str, tuple[nn.Module, Tensor]] = {
            "localiser": (_ProbabilityGraph(detector.localiser), _probe_images()),
            "classifier": (detector.classifier, _probe_crops(detector.crop_size)),
        }
        anchor_source: SignDetector = detector.localiser
    elif isinstance(detector, SignDetector):
        kind = "detector"
        nets = {"detector": (_ProbabilityGraph(detector), _probe_images())}
        anchor_source = detector
    else:
        raise ConfigError(
            f"cannot export a {type(detector).__name__}; cuneidet-export takes sign detectors "
            "and two-stage recognisers (line networks are not exported)"
        )
    graphs: dict[str, dict[str, Any]] = {}
    with _staging(path.parent) as staging:
        for role, (net, probe) in nets.items():
            temporary = staging / f"{role}.onnx"
            with output_errors(graph_path(path, role), disk_full_only=True):
                graphs[role] = _export_graph(net, probe, temporary, role, GRAPHS[kind][role], opset)
            graphs[role]["file"] = graph_path(path, role).name
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "graphs": graphs,
            "num_classes": int(detector.num_classes),
            "classes": {str(k): dict(v) for k, v in sorted((classes or {}).items())} or None,
            "sign_height": float(getattr(detector, "sign_height", 128.0)),
            "normalisation": NORMALISATION,
            "strides": [int(s) for s in anchor_source.strides],
            "anchors": {
                "sizes": anchor_source.anchors.sizes,
                "aspect_ratios": anchor_source.anchors.aspect_ratios,
                "scales": anchor_source.anchors.scales,
            },
            "localiser_classes": int(anchor_source.num_classes),
            "inference": dict(inference or {}),
            "scale_auto": dict(scale_auto or {}),
            "recogniser": (
                {key: getattr(detector, key) for key in _RECOGNISER_KEYS}
                if kind == "two_stage"
                else None
            ),
            "source": {
                **dict(source or {}),
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "torch": torch.__version__,
            },
        }
        # the sidecar is written beside the graphs first (a full disk stops the export here,
        # with nothing in place), then the graphs move in and the sidecar last: a sidecar
        # always describes whole graphs
        write_json(staging / "sidecar.json", meta)
        with output_errors(sidecar_path(path)):
            for role in nets:
                os.replace(staging / f"{role}.onnx", graph_path(path, role))
            os.replace(staging / "sidecar.json", sidecar_path(path))
    log.info("exported %s (%s) -> %s", type(detector).__name__, kind, sidecar_path(path))
    return sidecar_path(path)


def _probe_images() -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand((2, 1, *_PROBE_SIZE), generator=generator) - 0.5


def _probe_crops(size: int) -> Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand((4, 1, size, size), generator=generator) - 0.5


def _export_graph(
    net: nn.Module,
    probe: Tensor,
    path: Path,
    role: str,
    names: tuple[tuple[str, ...], tuple[str, ...]],
    opset: int | None,
) -> dict[str, Any]:
    """Export ``net`` (dynamic batch; dynamic H, W for image inputs) and check it with ORT."""
    inputs, outputs = names
    dim = torch.export.Dim
    spatial = {2: dim.DYNAMIC, 3: dim.DYNAMIC} if inputs[0] == "images" else {}
    dynamic = ({0: dim.DYNAMIC, **spatial},)
    net = net.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations of its own internals)
        program = torch.onnx.export(
            net,
            (probe,),
            dynamo=True,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_shapes=dynamic,
            opset_version=opset,
            verbose=False,
        )
    if program is None:
        raise ModelFileError(f"torch.onnx.export returned no program for the {role} graph")
    program.save(str(path), external_data=False)
    deviation = _check_against_torch(net, probe, path, outputs)
    if deviation > EXPORT_TOLERANCE:
        raise ModelFileError(
            f"the exported {role} graph differs from PyTorch by {deviation:.2e} on the probe "
            f"input (tolerance {EXPORT_TOLERANCE:g}); report this with the model config"
        )
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
    return {
        "sha256": file_sha256(path),
        "inputs": list(inputs),
        "outputs": list(outputs),
        "opset": opsets.get("ai.onnx"),
        "probe_max_abs_diff": deviation,
    }


def _check_against_torch(
    net: nn.Module, probe: Tensor, path: Path, outputs: tuple[str, ...]
) -> float:
    from cuneidet.deploy.runtime import OrtGraph

    with torch.no_grad():
        expected = net(probe)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = OrtGraph(path, threads=1)(probe.numpy())
    return max(
        float(np.max(np.abs(g - e.float().numpy()))) if e.numel() else 0.0
        for g, e in zip(got, expected, strict=True)
    )


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A temporary folder beside the export (same file system: the renames are atomic),
    removed with whatever is left in it; a folder that cannot be written is an
    :class:`~cuneidet.errors.OutputError`."""
    with output_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        staging = tempfile.TemporaryDirectory(dir=folder, prefix=".export-")
    with staging as name:
        yield Path(name)
