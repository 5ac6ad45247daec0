"""Kill-and-resume proofs for ``cuneidet-train`` and ``cuneidet-pipeline``.

A scenario's command runs once uninterrupted (the *reference*); then, for each seed, the same
command starts in a fresh folder (its own process group), is killed with SIGKILL at a point drawn
from the seed, and is resumed until it finishes (training: ``ckpt_path=last`` with the same
``hydra.run.dir``; the pipeline: the same command, the same output root). The finished folder is
then compared with the reference's, file by file (:func:`compare_trees`), and searched for
anything half-written (temporary files, ``.partial``/``.old`` folders, manifests that do not
parse or are not done).

Kill points: the reference run is watched (every 50 ms) for *events*: a watched file written
or rewritten (training: ``last.ckpt`` after each epoch, ``best.ckpt``, the test metrics, the
summary; pipeline: each stage's manifest when the stage starts, fails or finishes, a training
stage's ``last.ckpt``, the pipeline's ``metrics.csv``). A seed draws an anchor (the process
start or one of the reference's events) and a delay after it (:func:`plan_kill`: half of the
seeds an anchor uniformly and a delay within the reference's time to the next event, the others
a moment uniformly within the reference's duration); the killed run waits for the anchor (or a
later event of the reference's), then for the delay, and is killed. Further kills
(``kills > 1``) hit the resumed runs at a uniform time within 80 % of the reference's duration.

What may differ (:data:`IGNORED`): timestamps and durations, the git commit (read from the live
checkout, which another person may commit to while the runs go on; the code itself is a snapshot
taken once, :func:`snapshot_code`), and for ``cuneidet-train`` the command line and
``ckpt_path`` (a resume adds ``ckpt_path=last``). Training figures must agree within
:data:`TRAIN_TOLERANCE`; pipeline artifacts must be identical (tolerance 0).

Used by ``tests/integration/test_kill_resume.py`` and ``scripts/kill_resume.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]

FAST = [
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "data.progress=false",
    "model.inference.pre_nms_topk=3000",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=1",
]

# Fields that legitimately differ between an uninterrupted and a killed-and-resumed run, by key
# name anywhere in a JSON/YAML file (or a CSV column), with the reason.
IGNORED: dict[str, str] = {
    "started": "wall-clock time a pipeline stage started",
    "finished": "wall-clock time a pipeline stage finished",
    "duration_s": "seconds a pipeline stage took",
    "train_time_s": "seconds of training",
    "wall_time_s": "seconds of the whole run",
    "train/train_time_s": "seconds of training (the pipeline's metrics.csv / summary.json)",
    "git_commit": "read from the live checkout, which may be committed to during the runs",
}
# ... and for cuneidet-train only: a resume is started with ckpt_path=last
IGNORED_TRAIN: dict[str, str] = {
    "command": "the resumed run's command line has ckpt_path=last",
    "ckpt_path": "the resumed run's configuration has ckpt_path=last",
}
IGNORED_PIPELINE: dict[str, str] = {
    "ckpt_path": "a training stage resumed inside the pipeline is configured with its last.ckpt",
}


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``|resumed - reference| <= atol + rtol * |reference|`` for every compared number."""

    atol: float = 0.0
    rtol: float = 0.0

    def close(self, a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= self.atol + self.rtol * abs(b)


EXACT = Tolerance()
# Training: the resumed run redoes the killed epoch from last.ckpt with the checkpoint's random
# state (cuneidet.utils.rng_state), on the same CPU with the same thread count, so it computes
# the same floating-point operations; the tolerance only allows for float32 rounding in case a
# kernel sums in another order (1e-5 relative is ~100 float32 ulps).
TRAIN_TOLERANCE = Tolerance(atol=1e-6, rtol=1e-5)


# -- the code and the environment -------------------------------------------------------------
def snapshot_code(dest: Path) -> Path:
    """Copy ``src/`` and ``configs/`` to ``dest`` once, so that every run of a proof imports the
    same code even while someone edits the checkout; returns the folder for PYTHONPATH."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if not (dest / "src" / "cuneidet").is_dir():
        shutil.copytree(REPO / "src", dest / "src", ignore=ignore, dirs_exist_ok=True)
        shutil.copytree(REPO / "configs", dest / "configs", ignore=ignore, dirs_exist_ok=True)
    return dest / "src"


def environment(tmpdir: Path, code: Path | None = None) -> dict[str, str]:
    """One torch thread, W&B off, no data folder from the developer, a private TMPDIR (what a
    killed run leaves there is reported: Lightning's own checkpoint save stages files there)."""
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "HYDRA_FULL_ERROR": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TMPDIR": str(tmpdir),
    }
    env.pop("CUNEIDET_DATA_DIR", None)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    return env


# -- scenarios ------------------------------------------------------------------------------
@dataclasses.dataclass
class Scenario:
    """A command, where it writes, what to watch and how to compare."""

    kind: str  # "train" or "pipeline"
    overrides: list[str]
    watch: tuple[str, ...]
    tolerance: Tolerance
    ignored: dict[str, str]
    code: Path | None = None  # snapshot for PYTHONPATH

    def command(self, root: Path, resume: bool) -> list[str]:
        module = "train" if self.kind == "train" else "pipeline"
        args = [*self.overrides]
        if self.kind == "train":
            args += [f"hydra.run.dir={root / 'run'}", f"paths.log_dir={root / 'logs'}"]
            # ckpt_path=last needs a last.ckpt: killed before the first epoch ended, start again
            if resume and (root / "run" / "checkpoints" / "last.ckpt").is_file():
                args.append("ckpt_path=last")
        else:
            args += [f"hydra.run.dir={root / 'hydra'}", f"paths.log_dir={root / 'outputs'}"]
        return [sys.executable, "-m", f"cuneidet.cli.{module}", *args]

    def artifacts(self, root: Path) -> Path:
        if self.kind == "train":
            return root / "run"
        return root / "outputs" / "pipelines" / "proof"


def train_scenario(data: Path, epochs: int = 4, code: Path | None = None) -> Scenario:
    """A tiny detector on the synthetic CSDD: 2-tile batches (several steps per epoch, so the
    shuffle matters), ``epochs`` epochs, validation on one tablet, the test at the end."""
    return Scenario(
        kind="train",
        overrides=[
            f"paths.data_dir={data}",
            f"trainer.max_epochs={epochs}",
            "data.val_fraction=0.25",
            "data.batch_size=2",
            *FAST,
        ],
        watch=(
            "checkpoints/last.ckpt",
            "checkpoints/best.ckpt",
            "test/metrics.json",
            "summary.json",
        ),
        tolerance=TRAIN_TOLERANCE,
        ignored={**IGNORED, **IGNORED_TRAIN},
        code=code,
    )


def pipeline_scenario(
    data: Path, line_ckpt: Path, epochs: int = 2, code: Path | None = None
) -> Scenario:
    """Iterations 0 and 1 of the semi-supervised loop on the synthetic CSDD with a tiny line
    network: ``epochs`` epochs per training stage (so a kill inside one resumes from its
    last.ckpt), raw detections down to score 0.001, at most 100 per view (iteration 1 then has
    detections that depend on every weight of detector 0)."""
    return Scenario(
        kind="pipeline",
        overrides=[
            f"paths.data_dir={data}",
            f"pipeline.line_ckpt={line_ckpt}",
            "pipeline.name=proof",
            "pipeline.iteration=1",
            "pipeline.workers=1",
            "pipeline.semi_supervised=true",
            "pipeline.detect.score_thresh=0.001",
            "+pipeline.detect.pre_nms_topk=1000",
            "+pipeline.detect.max_detections=100",
            f"trainer.max_epochs={epochs}",
            "data.val_tablets=[TRAIN002]",
            "data.batch_size=4",
            *FAST,
        ],
        watch=("iter_*/*/manifest.json", "iter_*/*/checkpoints/last.ckpt", "metrics.csv"),
        tolerance=EXACT,
        ignored={**IGNORED, **IGNORED_PIPELINE},
        code=code,
    )


LINE_NET = [
    "model=line_net",
    "model/line_arch=seg",
    "model.net.channels=8",
    "data.val_tablets=[TRAIN002]",
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "data.batch_size=2",
    "data.crop_size=256",
    "data.crops_per_epoch=16",
    "data.progress=false",
    "data.box_sets=[train_full,test_full]",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=1",
    "trainer.max_epochs=12",
]


def prepare_inputs(folder: Path, kinds: Sequence[str], code: Path | None = None) -> dict[str, Path]:
    """The synthetic CSDD(s) and, for the pipeline, a tiny line network (as
    tests/integration/test_pipeline_cli.py trains it: about 1.5 min); reused when present."""
    from tests.synthetic_csdd import make_synthetic_csdd

    out: dict[str, Path] = {}
    if "train" in kinds:
        data = folder / "train_data"
        if not (data / "csdd").is_dir():
            make_synthetic_csdd(data)
        out["train_data"] = data
    if "pipeline" in kinds:
        data = folder / "pipeline_data"
        if not (data / "csdd").is_dir():
            make_synthetic_csdd(data, train_tablets=4, test_tablets=2, with_lines=True)
        lines = folder / "line_net"
        ckpt = lines / "checkpoints" / "best.ckpt"
        if not ckpt.is_file():
            tmp = folder / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable,
                "-m",
                "cuneidet.cli.train",
                *LINE_NET,
                f"paths.data_dir={data}",
                f"hydra.run.dir={lines}",
                f"paths.log_dir={folder / 'logs'}",
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, env=environment(tmp, code), cwd=folder
            )
            if done.returncode != 0:
                raise RuntimeError(f"line network failed:\n{done.stderr[-3000:]}")
        out["pipeline_data"], out["line_ckpt"] = data, ckpt
    return out


# -- running, watching, killing --------------------------------------------------------------
class Watcher:
    """Events of a run folder: each watched file written or rewritten (by mtime and size) is
    an event ``<relative path>#<n>`` (n-th version)."""

    def __init__(self, root: Path, patterns: Sequence[str]) -> None:
        self.root = root
        self.patterns = patterns
        self.seen: dict[str, tuple[int, int]] = {}
        self.versions: dict[str, int] = {}

    def poll(self) -> list[str]:
        events = []
        for pattern in self.patterns:
            for path in sorted(self.root.glob(pattern)):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                key = str(path.relative_to(self.root))
                signature = (stat.st_mtime_ns, stat.st_size)
                if self.seen.get(key) != signature:
                    self.seen[key] = signature
                    self.versions[key] = self.versions.get(key, 0) + 1
                    events.append(f"{key}#{self.versions[key]}")
        return events


@dataclasses.dataclass
class Attempt:
    resume: bool
    returncode: int | None
    seconds: float
    killed: bool = False
    kill_anchor: str | None = None
    kill_at_s: float | None = None
    events: list[str] = dataclasses.field(default_factory=list)
    log: str = ""


@dataclasses.dataclass
class KillPlan:
    anchor: str  # "start" or an event name
    delay_s: float  # after the anchor
    # the anchor and the reference's later events: whichever the killed run shows first starts
    # the delay (a stage that takes less than a poll may come and go unseen)
    triggers: frozenset[str] = frozenset()
    mode: str = "anchor"  # how it was drawn (plan_kill)


def run_once(
    scenario: Scenario,
    root: Path,
    resume: bool,
    plan: KillPlan | None = None,
    timeline: list[tuple[str, float]] | None = None,
    timeout: float = 900.0,
) -> Attempt:
    """Run the scenario's command once in ``root``; kill its process group per ``plan``."""
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = root / f"attempt_{len(list(root.glob('attempt_*.log')))}.log"
    watcher = Watcher(scenario.artifacts(root), scenario.watch)
    watcher.poll()  # what is there already is no event of this attempt
    start = time.monotonic()
    deadline = None if plan is None or plan.anchor != "start" else start + plan.delay_s
    events: list[str] = []
    killed = False
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            scenario.command(root, resume),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment(tmp, scenario.code),
            cwd=root,
            start_new_session=True,  # its own process group: the kill reaches every child
        )
        try:
            while proc.poll() is None:
                now = time.monotonic()
                for event in watcher.poll():
                    events.append(event)
                    if timeline is not None:
                        timeline.append((event, now - start))
                    if plan is not None and deadline is None and event in plan.triggers:
                        deadline = now + plan.delay_s
                if deadline is not None and now >= deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    killed = True
                    break
                if now - start > timeout:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    raise TimeoutError(f"{scenario.kind} ran over {timeout} s: {log_path}")
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    seconds = time.monotonic() - start
    if timeline is not None:
        for event in watcher.poll():  # written in the last moments
            timeline.append((event, seconds))
            events.append(event)
    return Attempt(
        resume=resume,
        returncode=None if killed else proc.returncode,
        seconds=round(seconds, 2),
        killed=killed,
        kill_anchor=plan.anchor if killed and plan else None,
        kill_at_s=round(seconds, 2) if killed else None,
        events=events,
        log=str(log_path),
    )


@dataclasses.dataclass
class Reference:
    root: Path
    seconds: float
    timeline: list[tuple[str, float]]  # (event, seconds after start)


def run_reference(scenario: Scenario, root: Path) -> Reference:
    """The uninterrupted run, with the times of its events."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    timeline: list[tuple[str, float]] = []
    attempt = run_once(scenario, root, resume=False, timeline=timeline)
    if attempt.returncode != 0:
        raise RuntimeError(f"the reference {scenario.kind} run failed: {attempt.log}")
    return Reference(root, attempt.seconds, timeline)


def plan_kill(reference: Reference, rng: random.Random) -> KillPlan:
    """A kill point relative to the reference's progress, drawn one of two ways (a fair coin):

    * ``anchor``: an anchor drawn uniformly from the start and the reference's events (those
      seen in the same poll count as one), then a delay drawn uniformly within the time the
      reference took from it to its next event (or to its end): every step boundary (a stage
      finishing, a checkpoint, the report) is as likely as any other;
    * ``time``: a moment drawn uniformly within the reference's duration, as its last anchor
      before it and the delay since: every second is as likely (long training epochs most).
    """
    anchors: list[tuple[int, str, float]] = [(0, "start", 0.0)]
    for index, (name, at) in enumerate(reference.timeline, start=1):
        if at > anchors[-1][2]:
            anchors.append((index, name, at))
    mode = "anchor" if rng.random() < 0.5 else "time"
    if mode == "anchor":
        pick = rng.randrange(len(anchors))
        following = anchors[pick + 1][2] if pick + 1 < len(anchors) else reference.seconds
        delay = rng.uniform(0.0, max(0.0, following - anchors[pick][2]))
    else:
        moment = rng.uniform(0.0, reference.seconds)
        pick = max(i for i, anchor in enumerate(anchors) if anchor[2] <= moment)
        delay = moment - anchors[pick][2]
    index, name, _ = anchors[pick]
    later = frozenset(event for event, _ in reference.timeline[max(0, index - 1) :])
    return KillPlan(name, round(delay, 3), later if name != "start" else frozenset(), mode)


@dataclasses.dataclass
class Trial:
    kind: str
    seed: int
    plan: KillPlan | None
    attempts: list[Attempt]
    finished: bool
    comparison: Comparison | None
    leftovers: list[str]
    tmp_orphans: list[str]
    seconds: float

    @property
    def killed(self) -> int:
        return sum(a.killed for a in self.attempts)

    @property
    def resumes(self) -> int:
        return sum(a.resume for a in self.attempts)

    @property
    def ok(self) -> bool:
        return bool(
            self.finished and self.comparison and self.comparison.identical and not self.leftovers
        )

    def record(self) -> dict[str, Any]:
        first = self.attempts[0]
        return {
            "kind": self.kind,
            "seed": self.seed,
            "kill_mode": self.plan.mode if self.plan else None,
            "kill_anchor": self.plan.anchor if self.plan else None,
            "kill_delay_s": self.plan.delay_s if self.plan else None,
            "killed": self.killed,
            "killed_at_s": first.kill_at_s,
            "events_before_kill": first.events if first.killed else None,
            "resume_attempts": self.resumes,
            "attempts": [
                {
                    "resume": a.resume,
                    "returncode": a.returncode,
                    "seconds": a.seconds,
                    "killed": a.killed,
                    "kill_at_s": a.kill_at_s,
                }
                for a in self.attempts
            ],
            "finished": self.finished,
            "identical": bool(self.comparison and self.comparison.identical),
            "ok": self.ok,
            "comparison": self.comparison.record() if self.comparison else None,
            "leftovers": self.leftovers,
            "tmp_orphans": self.tmp_orphans,
            "seconds": round(self.seconds, 1),
        }


def run_trial(
    scenario: Scenario,
    reference: Reference,
    root: Path,
    seed: int,
    kills: int = 1,
    max_resumes: int = 4,
) -> Trial:
    """Kill the command at a point drawn from ``seed`` (``kills`` times in all), resume until it
    finishes, compare with the reference. ``kills=0``: a second uninterrupted run (the control:
    the reference's own reproducibility)."""
    started = time.monotonic()
    rng = random.Random(f"{scenario.kind}:{seed}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    plan = plan_kill(reference, rng) if kills > 0 else None
    attempts = [run_once(scenario, root, resume=False, plan=plan)]
    kills_left = kills - int(attempts[0].killed)
    finished = attempts[0].returncode == 0
    while not finished and sum(a.resume for a in attempts) < max_resumes:
        again = None
        if kills_left > 0:
            again = KillPlan("start", round(rng.uniform(0.0, 0.8 * reference.seconds), 3))
        attempt = run_once(scenario, root, resume=True, plan=again)
        attempts.append(attempt)
        kills_left -= int(attempt.killed)
        finished = attempt.returncode == 0
    comparison = None
    if finished:
        comparison = compare_trees(
            scenario.artifacts(reference.root),
            scenario.artifacts(root),
            scenario.kind,
            scenario.tolerance,
            scenario.ignored,
            roots=(root, reference.root),
        )
    return Trial(
        kind=scenario.kind,
        seed=seed,
        plan=plan,
        attempts=attempts,
        finished=finished,
        comparison=comparison,
        leftovers=leftovers(scenario.artifacts(root)),
        tmp_orphans=tmp_orphans(root / "tmp"),
        seconds=time.monotonic() - started,
    )


# -- what must not remain --------------------------------------------------------------------
ALLOWED_HIDDEN = {".hydra"}


def tmp_orphans(tmpdir: Path) -> list[str]:
    """Files a killed run left in its TMPDIR (Lightning writes a checkpoint there first, then
    moves it into place), torch's compile cache aside."""
    return sorted(
        str(p.relative_to(tmpdir))
        for p in tmpdir.rglob("*")
        if p.is_file() and not p.relative_to(tmpdir).parts[0].startswith("torchinductor")
    )


def leftovers(root: Path) -> list[str]:
    """Half-written things: temporary files of atomic writes (``.<name>.<random>.tmp``), stage
    folders being built or replaced (``.<stage>.partial``, ``.<stage>.old``), any other hidden
    or ``*.tmp`` path; manifests that do not parse or are not ``done``."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        hidden = [p for p in rel.parts if p.startswith(".") and p not in ALLOWED_HIDDEN]
        if hidden or path.name.endswith((".tmp", ".partial")):
            found.append(str(rel))
        elif path.name == "manifest.json":
            try:
                status = json.loads(path.read_text()).get("status")
            except (OSError, ValueError) as error:
                found.append(f"{rel} (does not parse: {error})")
                continue
            if status != "done":
                found.append(f"{rel} (status {status})")
    return found


# -- comparing -------------------------------------------------------------------------------
@dataclasses.dataclass
class Comparison:
    identical: bool = True
    files: int = 0
    differences: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    max_metric_diff: float = 0.0
    max_weight_diff: float = 0.0
    # (resumed, reference) run folders: each stands for "<run>" in the text compared
    roots: tuple[str, str] = ("", "")

    def same_text(self, a: str, b: str) -> bool:
        """Equal once each run's own folder is replaced by ``<run>``."""
        if a == b:
            return True
        ours, theirs = self.roots
        return bool(ours) and a.replace(ours, "<run>") == b.replace(theirs, "<run>")

    def differ(self, message: str) -> None:
        """Record a difference (at most 3 per file and 50 in all are kept)."""
        self.identical = False
        file = message.split(":", 1)[0]
        same_file = sum(d.split(":", 1)[0] == file for d in self.differences)
        if len(self.differences) < 50 and same_file < 3:
            self.differences.append(message)

    def number(self, where: str, a: float, b: float, tolerance: Tolerance, weight: bool = False):
        diff = 0.0 if (math.isnan(a) and math.isnan(b)) else abs(a - b)
        if weight:
            self.max_weight_diff = max(self.max_weight_diff, diff)
        else:
            self.max_metric_diff = max(self.max_metric_diff, diff)
        if not tolerance.close(a, b):
            self.differ(f"{where}: {a!r} vs {b!r} (reference)")

    def record(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("roots")
        return record


# not artifacts: Hydra's job log and config copy, the resumable run's own log
SKIPPED = ("*.log", ".hydra/*")
# the pipeline report tabulates train_time_s: present in both, its figures are in metrics.csv
EXISTENCE_ONLY = ("report.html",)


def compare_trees(
    reference: Path,
    resumed: Path,
    kind: str,
    tolerance: Tolerance,
    ignored: dict[str, str],
    roots: tuple[Path, Path] | None = None,
) -> Comparison:
    """Every artifact of ``reference`` against the same path under ``resumed`` (see the module
    doc); files present on one side only differ. ``roots``: the (resumed, reference) run
    folders, which may appear in paths inside the files."""
    result = Comparison(roots=(str(roots[0]), str(roots[1])) if roots else ("", ""))

    def listing(root: Path) -> set[str]:
        paths = set()
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if path.is_file() and not any(rel.match(p) for p in SKIPPED):
                paths.add(str(rel))
        return paths

    ours, theirs = listing(reference), listing(resumed)
    for rel in sorted(ours ^ theirs):
        side = "only in the reference" if rel in ours else "only in the resumed run"
        result.differ(f"{rel}: {side}")
    for rel in sorted(ours & theirs):
        result.files += 1
        a, b = resumed / rel, reference / rel
        if any(Path(rel).match(p) for p in EXISTENCE_ONLY):
            continue
        try:
            _compare_file(rel, a, b, kind, tolerance, ignored, result)
        except Exception as error:  # a file that cannot be read is a difference, not a crash
            result.differ(f"{rel}: {type(error).__name__}: {error}")
    return result


def _compare_file(
    rel: str,
    a: Path,
    b: Path,
    kind: str,
    tolerance: Tolerance,
    ignored: dict[str, str],
    result: Comparison,
) -> None:
    suffix = a.suffix
    if suffix == ".json":
        _compare_values(
            f"{rel}:$",
            json.loads(a.read_text()),
            json.loads(b.read_text()),
            tolerance,
            ignored,
            result,
        )
    elif suffix == ".yaml":
        _compare_values(
            f"{rel}:$",
            yaml.safe_load(a.read_text()),
            yaml.safe_load(b.read_text()),
            tolerance,
            ignored,
            result,
        )
    elif suffix == ".ckpt":
        _compare_checkpoints(rel, a, b, tolerance, result)
    elif suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            if sorted(x.files) != sorted(y.files):
                result.differ(f"{rel}: arrays {sorted(x.files)} vs {sorted(y.files)}")
                return
            for key in x.files:
                _compare_arrays(f"{rel}:{key}", x[key], y[key], tolerance, result)
    elif suffix == ".csv" and Path(rel).name == "metrics.csv" and "csv" in Path(rel).parts:
        _compare_training_log(rel, a, b, tolerance, result)
    elif suffix == ".csv" and (kind == "train" or Path(rel).name == "metrics.csv"):
        _compare_tables(rel, pd.read_csv(a), pd.read_csv(b), tolerance, ignored, result)
    elif suffix == ".png" and a.read_bytes() != b.read_bytes():
        from PIL import Image

        x, y = np.asarray(Image.open(a)), np.asarray(Image.open(b))
        if x.shape != y.shape or not np.array_equal(x, y):
            result.differ(f"{rel}: images differ")
        else:
            result.notes.append(f"{rel}: same pixels, other bytes")
    elif suffix != ".png" and a.read_bytes() != b.read_bytes():
        try:
            same = result.same_text(a.read_text(), b.read_text())
        except UnicodeDecodeError:
            same = False
        if not same:
            result.differ(f"{rel}: bytes differ")


def _compare_values(
    where: str, a: Any, b: Any, tolerance: Tolerance, ignored: dict[str, str], result: Comparison
) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key in ignored:
                continue
            if key not in a or key not in b:
                result.differ(f"{where}.{key}: only in {'the reference' if key in b else 'ours'}")
                continue
            _compare_values(f"{where}.{key}", a[key], b[key], tolerance, ignored, result)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            result.differ(f"{where}: {len(a)} items vs {len(b)} (reference)")
            return
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare_values(f"{where}[{index}]", x, y, tolerance, ignored, result)
    elif _is_number(a) and _is_number(b):
        result.number(where, float(a), float(b), tolerance)
    elif isinstance(a, str) and isinstance(b, str):
        if not result.same_text(a, b):
            result.differ(f"{where}: {a!r} vs {b!r} (reference)")
    elif a != b:
        result.differ(f"{where}: {a!r} vs {b!r} (reference)")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare_arrays(
    where: str, a: Any, b: Any, tolerance: Tolerance, result: Comparison, weight: bool = False
) -> None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        result.differ(f"{where}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
        return
    if a.size == 0:
        return
    if a.dtype.kind in "fc":
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        worst = int(np.nanargmax(diff)) if np.isfinite(diff).any() else 0
        result.number(where, float(a.flat[worst]), float(b.flat[worst]), tolerance, weight)
        close = np.abs(a - b) <= tolerance.atol + tolerance.rtol * np.abs(b)
        if not (close | (np.isnan(a) & np.isnan(b))).all():
            result.differ(f"{where}: {int((~close).sum())} of {a.size} values differ")
    elif not np.array_equal(a, b):
        result.differ(f"{where}: values differ")


def _compare_checkpoints(
    rel: str, a: Path, b: Path, tolerance: Tolerance, result: Comparison
) -> None:
    import torch

    x = torch.load(a, map_location="cpu", weights_only=False)
    y = torch.load(b, map_location="cpu", weights_only=False)
    for key in ("epoch", "global_step"):
        if x.get(key) != y.get(key):
            result.differ(f"{rel}: {key} {x.get(key)} vs {y.get(key)} (reference)")
    sx, sy = x["state_dict"], y["state_dict"]
    if set(sx) != set(sy):
        result.differ(f"{rel}: other tensors in the state_dict")
        return
    for name in sorted(sx):
        _compare_arrays(
            f"{rel}:{name}", sx[name].numpy(), sy[name].numpy(), tolerance, result, weight=True
        )


def _compare_tables(
    where: str,
    a: pd.DataFrame,
    b: pd.DataFrame,
    tolerance: Tolerance,
    ignored: dict[str, str],
    result: Comparison,
) -> None:
    a = a.drop(columns=[c for c in a.columns if c in ignored])
    b = b.drop(columns=[c for c in b.columns if c in ignored])
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        result.differ(f"{where}: columns/shape {list(a.columns)} {a.shape} vs {b.shape}")
        return
    for column in a.columns:
        x, y = a[column], b[column]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            _compare_arrays(
                f"{where}:{column}",
                x.to_numpy(np.float64),
                y.to_numpy(np.float64),
                tolerance,
                result,
            )
        elif not all(map(result.same_text, x.astype(str), y.astype(str))):
            result.differ(f"{where}:{column}: values differ")


def _epoch_values(frame: pd.DataFrame) -> dict[tuple[int, str], float]:
    """The last value logged for each (epoch, metric) in a Lightning CSV log."""
    values: dict[tuple[int, str], float] = {}
    for _, row in frame.iterrows():
        epoch = row.get("epoch")
        if pd.isna(epoch):
            continue
        for column, value in row.items():
            if column in ("epoch", "step") or pd.isna(value):
                continue
            values[(int(epoch), str(column))] = float(value)
    return values


def _compare_training_log(
    rel: str, a: Path, b: Path, tolerance: Tolerance, result: Comparison
) -> None:
    """Lightning's CSV log: a killed run loses what it had not flushed yet, so the epochs logged
    by both runs are compared, and the last one must be in both."""
    x, y = _epoch_values(pd.read_csv(a)), _epoch_values(pd.read_csv(b))
    last = max((epoch for epoch, _ in y), default=None)
    if last is not None and not any(epoch == last for epoch, _ in x):
        result.differ(f"{rel}: epoch {last} is not in the resumed log")
    missing = sorted({epoch for epoch, _ in y} - {epoch for epoch, _ in x})
    if missing:
        result.notes.append(
            f"{rel}: epochs {missing} not in the resumed log (killed before "
            "Lightning's CSV logger flushed them)"
        )
    for key in sorted(set(x) & set(y)):
        result.number(f"{rel}:epoch {key[0]}:{key[1]}", x[key], y[key], tolerance)
    extra = sorted(set(x) - set(y))
    if extra:
        result.differ(f"{rel}: {len(extra)} values only in the resumed log, e.g. {extra[0]}")


__all__ = [
    "EXACT",
    "IGNORED",
    "TRAIN_TOLERANCE",
    "Comparison",
    "Reference",
    "Scenario",
    "Tolerance",
    "Trial",
    "compare_trees",
    "leftovers",
    "pipeline_scenario",
    "plan_kill",
    "prepare_inputs",
    "run_once",
    "run_reference",
    "run_trial",
    "snapshot_code",
    "train_scenario",
]
