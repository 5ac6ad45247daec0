"""The JSON sidecar of an exported detector: everything a runtime needs besides the graphs.

An export ``sign.onnx`` is the detector graph (or the localiser of a two-stage recogniser) with
``sign.json`` beside it and, for a recogniser, ``sign.classifier.onnx``. The sidecar records the
kind of model, the classes, the working sign height, the input normalisation, the anchor layout,
the score/NMS settings, the recogniser settings and where the model came from (checkpoint,
commit, torch and opset), plus the SHA-256 of every graph so that a graph replaced behind the
sidecar's back is refused instead of decoded with the wrong anchors or classes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cuneidet.errors import DataNotFoundError, ModelFileError

FORMAT = "cuneidet-onnx"
FORMAT_VERSION = 1
KINDS = ("detector", "two_stage")
#: graphs of each kind: role -> (input names, output names)
GRAPHS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "detector": {"detector": (("images",), ("loc", "probs"))},
    "two_stage": {
        "localiser": (("images",), ("loc", "probs")),
        "classifier": (("crops",), ("logits",)),
    },
}
#: input normalisation of every cuneidet network (grayscale, ``pixel / 255 - 0.5``)
NORMALISATION = {"colour": "grayscale", "multiply": 1 / 255, "add": -0.5}
_REQUIRED = ("format", "format_version", "kind", "graphs", "num_classes", "sign_height", "anchors")


def sidecar_path(model: str | Path) -> Path:
    """``sign.json`` for ``sign.onnx`` (a ``.json`` path is returned as it is)."""
    model = Path(model)
    return model if model.suffix == ".json" else model.with_suffix(".json")


def graph_path(model: str | Path, role: str) -> Path:
    """File of graph ``role``: the main graph is ``<stem>.onnx``, others ``<stem>.<role>.onnx``."""
    stem = sidecar_path(model).with_suffix("")
    main = role in ("detector", "localiser")
    return stem.with_suffix(".onnx") if main else stem.parent / f"{stem.name}.{role}.onnx"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(model: str | Path) -> dict[str, Any]:
    """Read and check the sidecar of ``model`` (the ``.onnx`` file or the ``.json`` itself)."""
    path = sidecar_path(model)
    if not path.is_file():
        raise DataNotFoundError(
            f"{path} (the sidecar of {model}) does not exist; export the model with "
            "`cuneidet-export ckpt_path=<best.ckpt> format=onnx`, which writes both files"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(
            f"{path} is not a JSON sidecar ({error}); re-export the model"
        ) from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(
            f'{path} is not a cuneidet model sidecar (no "format": "{FORMAT}"); '
            "re-export the model with cuneidet-export"
        )
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise ModelFileError(f"{path} lacks {missing}; re-export the model with cuneidet-export")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {meta['format_version']}, this cuneidet reads up to "
            f"{FORMAT_VERSION}; update cuneidet"
        )
    if meta["kind"] not in KINDS:
        raise ModelFileError(f"{path}: kind {meta['kind']!r} is not one of {KINDS}")
    roles = set(GRAPHS[meta["kind"]])
    if set(meta["graphs"]) != roles:
        raise ModelFileError(
            f"{path}: a {meta['kind']} has graphs {sorted(roles)}, the sidecar lists "
            f"{sorted(meta['graphs'])}"
        )
    return meta


def checked_graph(model: str | Path, meta: dict[str, Any], role: str) -> Path:
    """The file of graph ``role``, after checking that it is the one the sidecar describes."""
    path = graph_path(model, role)
    if not path.is_file():
        raise DataNotFoundError(
            f"{path} ({role} graph of {sidecar_path(model)}) does not exist; keep the files "
            "of an export together or re-export with cuneidet-export"
        )
    expected = meta["graphs"][role].get("sha256")
    if expected and file_sha256(path) != expected:
        raise ModelFileError(
            f"{path} does not match its sidecar {sidecar_path(model)} (SHA-256 differs): the "
            "graph was replaced or damaged after export; re-export both with cuneidet-export"
        )
    return path
