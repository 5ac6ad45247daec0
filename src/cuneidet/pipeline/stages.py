"""Resumable pipeline stages: a deterministic folder per stage, written atomically, with a manifest.

A stage ``s`` of iteration ``k`` lives in ``<root>/iter_<k>/<s>/``. It is built in a sibling
``.<s>.partial/`` folder and renamed into place only when it has finished, so a reader never
sees a half-written stage. Its ``manifest.json`` records the stage's fingerprint (a hash of its
configuration and of the fingerprints of the stages it reads), its inputs, its output files,
its metrics, timings and status. Running a stage whose folder holds a finished manifest with
the same fingerprint is a no-op; a changed configuration or a changed upstream stage makes it
run again (the old folder is replaced only when the new one is complete).

A stage killed mid-way leaves its ``.partial`` folder (one refused for bad input before it
wrote anything leaves nothing). A ``resumable`` stage (training, per-view
prediction) keeps it when the fingerprint matches, so the work function can pick up what it
finds there (a ``last.ckpt``, views already done); any other stage starts it afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cuneidet.errors import CuneidetError
from cuneidet.utils.io import write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STATUS_RUNNING, STATUS_DONE, STATUS_FAILED = "running", "done", "failed"


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_manifest(stage_dir: str | Path) -> dict[str, Any] | None:
    """A stage folder's manifest, or None when there is none (or it cannot be parsed)."""
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class StageResult:
    """A finished stage: its folder, manifest and whether this call only found it done."""

    directory: Path
    manifest: dict[str, Any]
    skipped: bool

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest.get("metrics") or {})

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])


Work = Callable[[Path], Mapping[str, Any] | None]
"""A stage's work: writes its files into the folder it is given, returns its metrics."""


class StageRunner:
    """Runs the stages of one pipeline under ``root`` (``outputs/pipelines/<name>``)."""

    def __init__(self, root: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.extra = dict(extra or {})  # recorded in every manifest (command, git commit, ...)

    def stage_dir(self, iteration: int, stage: str) -> Path:
        return self.root / f"iter_{int(iteration)}" / stage

    def finished(self, iteration: int, stage: str) -> StageResult | None:
        """The stage's result when its folder holds a finished manifest."""
        directory = self.stage_dir(iteration, stage)
        manifest = read_manifest(directory)
        if manifest is None or manifest.get("status") != STATUS_DONE:
            return None
        return StageResult(directory, manifest, skipped=True)

    def lookup(
        self,
        iteration: int,
        stage: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, StageResult | str | Path],
    ) -> StageResult | None:
        """The stage when it is finished *as configured* (same fingerprint), else None."""
        done = self.finished(iteration, stage)
        if done is None or done.fingerprint != _fingerprint(stage, config, inputs):
            return None
        return done

    def run(
        self,
        iteration: int,
        stage: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, StageResult | str | Path],
        work: Work,
        resumable: bool = False,
    ) -> StageResult:
        """Run ``work`` for stage ``stage`` of ``iteration`` unless it is already done as
        configured; returns the finished stage."""
        final = self.stage_dir(iteration, stage)
        upstream = {name: _describe_input(value) for name, value in inputs.items()}
        key = _fingerprint(stage, config, inputs)
        done = read_manifest(final)
        if done and done.get("status") == STATUS_DONE and done.get("fingerprint") == key:
            log.info("iter %d / %s: done already (%s), skipped", iteration, stage, final)
            # the replaced version, when a kill came while it was being removed
            shutil.rmtree(final.with_name(f".{stage}.old"), ignore_errors=True)
            return StageResult(final, done, skipped=True)
        partial = final.with_name(f".{stage}.partial")
        self._prepare_partial(partial, key, resumable)
        manifest: dict[str, Any] = {
            "stage": stage,
            "iteration": int(iteration),
            "fingerprint": key,
            "status": STATUS_RUNNING,
            "config": dict(config),
            "inputs": upstream,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **self.extra,
        }
        write_json(partial / MANIFEST, manifest)
        log.info("iter %d / %s: running into %s", iteration, stage, partial)
        started = time.monotonic()
        try:
            metrics = dict(work(partial) or {})
        except BaseException as error:
            if isinstance(error, CuneidetError) and not _outputs(partial):
                # refused for bad input before writing anything: nothing to resume or inspect
                shutil.rmtree(partial, ignore_errors=True)
                raise
            manifest |= {"status": STATUS_FAILED, "error": f"{type(error).__name__}: {error}"}
            write_json(partial / MANIFEST, manifest)
            raise
        manifest |= {
            "status": STATUS_DONE,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "duration_s": round(time.monotonic() - started, 2),
            "metrics": metrics,
            "outputs": _outputs(partial),
        }
        write_json(partial / MANIFEST, manifest)
        _replace_dir(partial, final)
        log.info(
            "iter %d / %s: done in %.1f s: %s", iteration, stage, manifest["duration_s"], metrics
        )
        return StageResult(final, manifest, skipped=False)

    @staticmethod
    def _prepare_partial(partial: Path, key: str, resumable: bool) -> None:
        """Keep a resumable stage's partial folder of the same fingerprint; else start empty."""
        if partial.exists():
            previous = read_manifest(partial)
            if resumable and previous and previous.get("fingerprint") == key:
                log.info("resuming the unfinished stage in %s", partial)
                return
            shutil.rmtree(partial)
        partial.mkdir(parents=True)


def _fingerprint(
    stage: str, config: Mapping[str, Any], inputs: Mapping[str, StageResult | str | Path]
) -> str:
    upstream = {name: _describe_input(value) for name, value in inputs.items()}
    return fingerprint({"stage": stage, "config": config, "inputs": upstream})


def _describe_input(value: StageResult | str | Path) -> dict[str, Any]:
    """An input's identity: a stage's fingerprint (not its path: a pipeline folder may move),
    or a plain path."""
    if isinstance(value, StageResult):
        return {"fingerprint": value.fingerprint}
    return {"path": str(value)}


def _outputs(directory: Path) -> list[str]:
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )


def _replace_dir(source: Path, target: Path) -> None:
    """Move a finished folder into place; an older version is removed only afterwards."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    if old.exists():
        shutil.rmtree(old)


__all__ = [
    "MANIFEST",
    "StageResult",
    "StageRunner",
    "fingerprint",
    "read_manifest",
]
