"""Run an exported detector with ONNX Runtime (CPU) behind the PyTorch detectors' interface.

:func:`load_onnx_detector` returns an object with the ``detect`` / ``sign_height`` /
``strides`` interface of :class:`~cuneidet.models.detector.SignDetector` (one-stage) or a
:class:`~cuneidet.models.two_stage.TwoStageDetector` whose localiser and classifier are ONNX
Runtime sessions, so :func:`cuneidet.inference.predict.detect_image`, ``predict_photos`` and the
automatic scale work unchanged, with the same decoding, crop cutting and NMS code as PyTorch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cuneidet.deploy.sidecar import GRAPHS, checked_graph, read_sidecar
from cuneidet.errors import ConfigError, ModelFileError
from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.detector import AnchorDecoding
from cuneidet.models.two_stage import TwoStageDetector

log = logging.getLogger(__name__)


class OrtGraph:
    """One ONNX Runtime CPU session: ``graph(*arrays) -> list of float32 arrays``.

    ``threads`` sets the intra-op thread count (inter-op 1: the graphs are sequential).
    A file that is not a loadable ONNX model raises :class:`ModelFileError` naming it.
    """

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ORT raises its own Fail/InvalidProtobuf/... types
            raise ModelFileError(
                f"{self.path} is not a loadable ONNX model ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); re-export it with "
                "cuneidet-export"
            ) from error
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def output_dim(self, name: str, axis: int) -> int | None:
        """Static size of ``axis`` of output ``name`` (None when dynamic)."""
        for output in self.session.get_outputs():
            if output.name == name:
                value = output.shape[axis]
                return value if isinstance(value, int) else None
        return None

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        feeds = {
            name: np.ascontiguousarray(a, dtype=np.float32)
            for name, a in zip(self.input_names, arrays, strict=True)
        }
        return self.session.run(None, feeds)


class OnnxSignDetector(AnchorDecoding):
    """An anchor detector whose network runs in ONNX Runtime; decoding is PyTorch's."""

    def __init__(
        self,
        graph: OrtGraph,
        anchors: AnchorGenerator,
        strides: list[int],
        num_classes: int,
        sign_height: float = 128.0,
    ) -> None:
        self.graph = graph
        self.anchors = anchors
        self._strides = [int(s) for s in strides]
        self.num_classes = int(num_classes)
        self.sign_height = float(sign_height)

    @property
    def strides(self) -> list[int]:
        return self._strides

    def raw_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        loc, probs = self.graph(images.detach().cpu().numpy())
        return torch.from_numpy(loc), torch.from_numpy(probs)


class OnnxClassifier:
    """The sign classifier of a recogniser in ONNX Runtime: ``crops [K, 1, S, S] -> logits``."""

    def __init__(self, graph: OrtGraph, num_classes: int) -> None:
        self.graph = graph
        self.num_classes = int(num_classes)

    def __call__(self, crops: Tensor) -> Tensor:
        (logits,) = self.graph(crops.detach().cpu().numpy())
        return torch.from_numpy(logits)


def load_onnx_detector(
    model: str | Path,
    threads: int = 2,
    recogniser: Mapping[str, Any] | None = None,
) -> tuple[OnnxSignDetector | TwoStageDetector, dict[str, Any]]:
    """The detector exported to ``model`` (``.onnx`` or its ``.json`` sidecar) and its sidecar.

    ``recogniser`` overrides the exported recogniser settings (``top_k``, ``tta_contexts``, …);
    the sidecar's ``inference`` holds the score/NMS settings to pass to ``detect``.
    """
    meta = read_sidecar(model)
    kind = meta["kind"]
    graphs = {role: OrtGraph(checked_graph(model, meta, role), threads) for role in GRAPHS[kind]}
    for role, graph in graphs.items():
        _check_interface(graph, role, GRAPHS[kind][role], meta)
    anchors = AnchorGenerator(**meta["anchors"])
    main = "detector" if kind == "detector" else "localiser"
    detector: Any = OnnxSignDetector(
        graphs[main],
        anchors,
        meta["strides"],
        meta.get("localiser_classes", meta["num_classes"]),
        meta["sign_height"],
    )
    if kind == "two_stage":
        from cuneidet.models.checkpoint import RECOGNISER_SETTINGS

        chosen = {k: v for k, v in (recogniser or {}).items() if v is not None}
        unknown = sorted(set(chosen) - set(RECOGNISER_SETTINGS))
        if unknown:
            raise ConfigError(
                f"recogniser.{unknown[0]} is unknown; choose from {RECOGNISER_SETTINGS}"
            )
        settings = {**meta["recogniser"], **chosen}
        classifier = OnnxClassifier(graphs["classifier"], meta["num_classes"])
        try:
            detector = TwoStageDetector(detector, classifier, **settings)  # type: ignore[arg-type]
        except TypeError as error:
            raise ModelFileError(f"{model}: recogniser settings do not fit ({error})") from error
        detector.sign_height = float(meta["sign_height"])
    elif recogniser and any(v is not None for v in recogniser.values()):
        raise ConfigError(
            f"recogniser.* settings apply to two-stage recognisers; {model} is a one-stage "
            "detector: use inference.* instead"
        )
    return detector, meta


def _check_interface(
    graph: OrtGraph,
    role: str,
    names: tuple[tuple[str, ...], tuple[str, ...]],
    meta: Mapping[str, Any],
) -> None:
    """The graph has the inputs, outputs and class count its sidecar promises."""
    inputs, outputs = names
    if graph.input_names != list(inputs) or graph.output_names != list(outputs):
        raise ModelFileError(
            f"{graph.path}: inputs {graph.input_names} / outputs {graph.output_names}, the "
            f"{role} graph of a cuneidet export has {list(inputs)} / {list(outputs)}; the graph "
            "does not belong to this sidecar: re-export with cuneidet-export"
        )
    main = role != "classifier"  # the detector / localiser graph
    expected = meta.get("localiser_classes", meta["num_classes"]) if main else meta["num_classes"]
    classes = graph.output_dim(outputs[-1], -1)
    if classes is not None and classes != int(expected):
        raise ModelFileError(
            f"{graph.path} outputs {classes} classes but its sidecar says {expected}: the graph "
            "does not belong to this sidecar; re-export with cuneidet-export"
        )


RUNTIMES = ("torch", "onnx")


@dataclass
class InferenceModel:
    """A detector ready for :func:`cuneidet.inference.predict.predict_photos`, whatever runs it.

    ``inference`` holds the score/NMS settings to pass on; ``class_names`` maps train labels to
    sign names where known; ``source`` names the checkpoint or model file.
    """

    detector: Any
    inference: dict[str, Any]
    num_classes: int
    runtime: str
    source: str
    class_names: dict[int, str] = field(default_factory=dict)
    scale_auto: dict[str, Any] = field(default_factory=dict)


def load_inference_model(
    runtime: str,
    *,
    ckpt_path: str | Path | None = None,
    model: str | Path | None = None,
    threads: int = 2,
    device: str = "cpu",
    inference: Mapping[str, Any] | None = None,
    recogniser: Mapping[str, Any] | None = None,
) -> InferenceModel:
    """``runtime="torch"``: the checkpoint ``ckpt_path`` in PyTorch on ``device``;
    ``runtime="onnx"``: the export ``model`` in ONNX Runtime (CPU, ``threads``).

    ``inference`` / ``recogniser`` override the stored settings (None keeps a value; 0 switches
    an optional cap off, as on the command line).
    """
    from cuneidet.models.checkpoint import inference_overrides, load_module

    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime={runtime} is unknown; choose from {RUNTIMES}")
    if runtime == "torch":
        if not ckpt_path:
            raise ConfigError(
                "runtime=torch needs ckpt_path=<run>/checkpoints/best.ckpt; for an exported "
                "model use runtime=onnx model_file=<file.onnx>"
            )
        module = load_module(ckpt_path, inference=inference, recogniser=recogniser)
        return InferenceModel(
            detector=module.detector.to(device),
            inference=dict(module.inference),
            num_classes=int(module.detector.num_classes),
            runtime=runtime,
            source=str(ckpt_path),
        )
    if not model:
        raise ConfigError(
            "runtime=onnx needs model_file=<file.onnx> written by cuneidet-export "
            "(cuneidet-export ckpt_path=<best.ckpt> output=<file.onnx>)"
        )
    if device not in ("cpu", "auto"):
        raise ConfigError(f"runtime=onnx runs on the CPU; got device={device}")
    detector, meta = load_onnx_detector(model, threads=threads, recogniser=recogniser)
    settings = {**(meta.get("inference") or {}), **inference_overrides(dict(inference or {}))}
    names = {int(k): str(v.get("name", k)) for k, v in (meta.get("classes") or {}).items()}
    return InferenceModel(
        detector=detector,
        inference=settings,
        num_classes=int(meta["num_classes"]),
        runtime=runtime,
        source=str(model),
        class_names=names,
        scale_auto=dict(meta.get("scale_auto") or {}),
    )
