"""Helpers of the bad-input corpus: run an entry point in-process, build malformed files.

The Hydra apps run in this process (their ``main`` with ``sys.argv`` set, as the console script
would): a run takes a fraction of a second instead of the seconds a fresh interpreter needs.
``Outcome.text`` joins what the user sees: standard output and error and the run's log file.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

from cuneidet.config import config_dir

#: names a partial or temporary artifact would have (atomic writers, uploads, exports)
LEFTOVER_PATTERNS = ("*.tmp", "*.tmp*", ".*.part", "*.part", ".*.onnx", ".*.json", ".*.csv")

#: the folder of a case's own input files (not checked for leftovers)
INPUTS = "in"
#: the console script of each Hydra app
SCRIPTS = {
    "train": "cuneidet-train",
    "evaluate": "cuneidet-eval",
    "predict": "cuneidet-predict",
    "export": "cuneidet-export",
    "lines": "cuneidet-lines",
    "pipeline": "cuneidet-pipeline",
    "forge": "cuneidet-forge",
    "classify": "cuneidet-classify",
    "serve": "cuneidet-serve",
}
#: the log file Hydra writes in the run folder (``<task_name>.log``)
TASK_NAMES = {"evaluate": "eval"}


@dataclass
class Outcome:
    """Exit code and everything the user saw: stdout, stderr, the run's log file."""

    code: int
    out: str
    err: str
    log: str

    @property
    def text(self) -> str:
        return "\n".join((self.out, self.err, self.log))

    def assert_error(self, code: int, *needles: str) -> None:
        """Exit ``code``, every needle in what the user saw (case-insensitive), no traceback."""
        assert self.code == code, f"exit {self.code}, expected {code}:\n{self.text[-4000:]}"
        assert "Traceback" not in self.text, self.text[-4000:]
        lowered = self.text.lower()
        for needle in needles:
            assert needle.lower() in lowered, f"{needle!r} not in:\n{self.text[-4000:]}"


@contextlib.contextmanager
def _restored_logging() -> Iterator[None]:
    """Hydra configures logging for its job; put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


def run_hydra_app(app: str, overrides: Iterable[str], run_dir: Path) -> Outcome:
    """Run ``cuneidet.cli.<app>.main`` as its console script would, in this process."""
    module = importlib.import_module(f"cuneidet.cli.{app}")
    argv = [SCRIPTS[app], *overrides, f"hydra.run.dir={run_dir}"]
    out, err = io.StringIO(), io.StringIO()
    GlobalHydra.instance().clear()
    code = 0
    saved_argv = sys.argv
    env = os.environ.pop("HYDRA_FULL_ERROR", None)
    try:
        sys.argv = argv
        with (
            _restored_logging(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                module.main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved_argv
        GlobalHydra.instance().clear()
        if env is not None:
            os.environ["HYDRA_FULL_ERROR"] = env
    log_file = run_dir / f"{TASK_NAMES.get(app, app)}.log"
    log = log_file.read_text(encoding="utf-8") if log_file.is_file() else ""
    return Outcome(code, out.getvalue(), err.getvalue(), log)


def run_argparse_app(main: Callable[[list[str]], int], argv: list[str]) -> Outcome:
    """Run an argparse entry point (``cuneidet-data``, ``cuneidet-oracle``) in this process."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _restored_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Outcome(code, out.getvalue(), err.getvalue(), "")


def leftovers(folder: Path) -> list[Path]:
    """Temporary, empty or half-written files under ``folder`` (its ``in/`` folder of test
    inputs left out)."""
    found: set[Path] = set()
    for pattern in LEFTOVER_PATTERNS:
        found.update(p for p in folder.rglob(pattern) if p.is_file())
    found.update(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size == 0)
    return sorted(p for p in found if p.relative_to(folder).parts[0] != INPUTS)


def assert_clean(folder: Path, *absent: str) -> None:
    """No temporary/empty file under ``folder`` and none of the ``absent`` artifacts (the
    ``in/`` folder of test inputs left out)."""
    assert not leftovers(folder), leftovers(folder)
    for name in absent:
        hits = [p for p in folder.rglob(name) if p.relative_to(folder).parts[0] != INPUTS]
        assert not hits, f"partial output left behind: {hits}"


# --------------------------------------------------------------------------- checkpoints

TINY_DETECTOR = [
    "model.detector.num_classes=4",
    "model.detector.fpn.width_mult=0.25",
    "model.detector.fpn.out_channels=16",
    "model.detector.head.channels=16",
    "model.detector.head.num_convs=1",
]


def compose_config(name: str, overrides: list[str]) -> Any:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name=name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def save_checkpoint(path: Path, overrides: list[str], sign_height: float = 128.0) -> Path:
    """A ``cuneidet-train``-style checkpoint (model config + random weights) of the train
    config's ``model`` with ``overrides``: what a trained run writes, without training."""
    from cuneidet.models.checkpoint import _without_pretrained
    from cuneidet.utils.instantiate import instantiate

    torch.manual_seed(0)
    model_config = OmegaConf.to_container(compose_config("train", overrides).model, resolve=True)
    module = instantiate(OmegaConf.create(_without_pretrained(model_config)))
    meta = {"model_config": model_config, "sign_height": sign_height}
    torch.save({"cuneidet": meta, "state_dict": module.state_dict()}, path)
    return path


def truncated_copy(source: Path, target: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


# --------------------------------------------------------------------------- photographs


def photo(path: Path, size: tuple[int, int] = (320, 256), mode: str = "RGB", **save: Any) -> Path:
    """A light photo with a few dark marks, in ``mode`` (RGB, CMYK, L, I;16)."""
    array = np.full((size[1], size[0]), 200, np.uint8)
    for y in range(24, size[1] - 60, 80):
        for x in range(24, size[0] - 60, 70):
            array[y : y + 48, x : x + 40] = 40
    image = Image.fromarray(array, "L")
    if mode == "I;16":
        image = Image.fromarray(array.astype(np.uint16) * 257)
    elif mode != "L":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` and holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


# --------------------------------------------------------------------------- output folders


def read_only_dir(path: Path, monkeypatch: Any) -> Path:
    """A folder that may not be written: ``chmod 0o555``; where that does not bind (running as
    root), creating files and folders in it is refused with EACCES as the kernel would
    (``os.open`` / ``os.mkdir``, which every temporary-file writer goes through)."""
    import errno

    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    probe = path / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return path  # the permission binds
    probe.unlink()
    path.chmod(0o755)
    real_open, real_mkdir = os.open, os.mkdir

    def inside(target: Any) -> bool:
        try:
            return Path(os.fsdecode(target)).resolve().is_relative_to(path.resolve())
        except (TypeError, ValueError):
            return False

    def refuse(target: Any) -> OSError:
        return PermissionError(errno.EACCES, "Permission denied", os.fsdecode(target))

    def guarded_open(target: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(target):
            raise refuse(target)
        return real_open(target, flags, *args, **kwargs)

    def guarded_mkdir(target: Any, *args: Any, **kwargs: Any) -> None:
        if inside(target) and Path(os.fsdecode(target)).resolve() != path.resolve():
            raise refuse(target)
        real_mkdir(target, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    return path


class DiskFull:
    """Make the atomic writers of :mod:`cuneidet.utils.io` meet a full disk.

    A file whose name contains ``match`` (every file with ``match=None``) takes ``allow`` bytes,
    then its write raises ``OSError(ENOSPC)``; for ``atomic_path`` writers (``torch.save``,
    ``savefig``) the rename into place fails the same way. ``hits`` lists the files refused.
    """

    def __init__(self, monkeypatch: Any, match: str | None = None, allow: int = 16) -> None:
        import builtins
        import errno

        from cuneidet.utils import io as io_module

        self.hits: list[str] = []
        real_open = builtins.open
        real_os = io_module.os

        def chosen(name: Any) -> bool:
            return match is None or match in Path(str(name)).name

        def full(name: Any) -> OSError:
            self.hits.append(str(name))
            return OSError(errno.ENOSPC, "No space left on device", str(name))

        class _Full:
            def __init__(self, handle: Any) -> None:
                self._handle = handle
                self._written = 0

            def write(self, data: Any) -> int:
                if self._written + len(data) > allow:
                    part = data[: max(0, allow - self._written)]
                    self._handle.write(part)  # half written, then the disk is full
                    self._written += len(part)
                    raise full(self._handle.name)
                self._written += len(data)
                return self._handle.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._handle, name)

            def __enter__(self) -> _Full:
                return self

            def __exit__(self, *exc: Any) -> None:
                self._handle.close()

        def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(file, mode, *args, **kwargs)
            writing = any(m in mode for m in "wax")
            return _Full(handle) if writing and chosen(file) else handle

        def fake_replace(src: Any, dst: Any) -> None:
            if chosen(dst) and Path(src).stat().st_size > allow:
                raise full(dst)
            real_os.replace(src, dst)

        monkeypatch.setattr(io_module, "open", fake_open, raising=False)
        monkeypatch.setattr(io_module, "os", _OsProxy(real_os, fake_replace))


class _OsProxy:
    """``os`` with ``replace`` swapped (only inside :mod:`cuneidet.utils.io`)."""

    def __init__(self, os_module: Any, replace: Callable[[Any, Any], None]) -> None:
        self._os = os_module
        self.replace = replace

    def __getattr__(self, name: str) -> Any:
        return getattr(self._os, name)
