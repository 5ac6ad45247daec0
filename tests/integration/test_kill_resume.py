"""Kill-and-resume proofs (tests/kill_resume.py): SIGKILL at random points, resume, and the
finished artifacts equal an uninterrupted run's; ``scripts/kill_resume.py`` runs it 10×.

The proofs on cuneidet-train and cuneidet-pipeline are slow (a reference run, then per seed a
killed run and its resume: about 25 s per training seed, 30 s per pipeline seed, plus 1.5 min
for the references and the line network: 4.5 min in all on 2 cores); the fast tests check the
machinery on a toy command and the comparison rules (3 s).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from tests import kill_resume as kr

SEEDS = [0, 1, 2]


# -- the machinery on a toy resumable job (fast) ---------------------------------------------
TOY_JOB = """
import json, sys, time
from pathlib import Path
from cuneidet.utils.io import write_json
out = Path(sys.argv[1])
for step in range(12):  # resumable: a finished step is skipped
    path = out / f"step_{step:02d}.json"
    if not path.is_file():
        time.sleep(0.1)
        write_json(path, {"step": step, "value": step**2 / 7, "finished": time.time()})
write_json(out / "manifest.json", {"status": "done", "steps": 12, "duration_s": time.time()})
"""


class ToyScenario(kr.Scenario):
    def command(self, root: Path, resume: bool) -> list[str]:
        return [sys.executable, "-c", TOY_JOB, str(self.artifacts(root))]

    def artifacts(self, root: Path) -> Path:
        return root / "out"


def _toy() -> ToyScenario:
    return ToyScenario(
        kind="toy",
        overrides=[],
        watch=("step_*.json", "manifest.json"),
        tolerance=kr.EXACT,
        ignored=kr.IGNORED,
    )


def _plan(reference: kr.Reference, seed: int) -> kr.KillPlan:
    return kr.plan_kill(reference, random.Random(f"toy:{seed}"))


def test_the_machinery_kills_resumes_and_compares_a_toy_job(tmp_path):
    scenario = _toy()
    reference = kr.run_reference(scenario, tmp_path / "reference")
    assert [event for event, _ in reference.timeline][-1] == "manifest.json#1"
    # a seed whose kill point is not in the job's last moments (it could end before the kill)
    seed = next(s for s in range(100) if _plan(reference, s).anchor.startswith("step_0"))
    trial = kr.run_trial(scenario, reference, tmp_path / "run", seed=seed)
    record = trial.record()
    assert trial.plan == _plan(reference, seed)  # drawn from the seed (and the reference)
    assert trial.killed == 1 and trial.resumes == 1 and trial.finished
    assert trial.attempts[0].returncode is None and trial.attempts[1].returncode == 0
    assert trial.ok, record
    assert record["comparison"]["files"] == 13
    json.dumps(record)  # the script's report


def test_the_comparison_sees_differences_and_leftovers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, value, started in ((a, 1.0, "10:00"), (b, 1.0, "11:00")):
        (root / "stage").mkdir(parents=True)
        manifest = {"status": "done", "started": started, "metrics": {"x": value}}
        (root / "stage" / "manifest.json").write_text(json.dumps(manifest))
        (root / "labels.csv").write_text(f"img, {root}/img.jpg, 3\n")
    roots = (b, a)
    same = kr.compare_trees(a, b, "pipeline", kr.EXACT, kr.IGNORED, roots=roots)
    assert same.identical and same.files == 2  # the start time and the run folder are no matter

    (b / "stage" / "manifest.json").write_text(
        json.dumps({"status": "done", "started": "x", "metrics": {"x": 1.0 + 1e-7}})
    )
    (b / "stray.txt").write_text("")
    exact = kr.compare_trees(a, b, "pipeline", kr.EXACT, kr.IGNORED, roots=roots)
    assert not exact.identical
    assert any("metrics.x" in d for d in exact.differences)
    assert any("stray.txt: only in" in d for d in exact.differences)
    within = kr.compare_trees(a, b, "train", kr.TRAIN_TOLERANCE, kr.IGNORED, roots=roots)
    assert not any("metrics.x" in d for d in within.differences)
    assert 0 < within.max_metric_diff < 1e-6

    (b / "stage" / ".labels.csv.abc-1-xxxxxxxx.tmp").write_text("half")
    (b / ".train.partial").mkdir()
    (b / "other").mkdir()
    (b / "other" / "manifest.json").write_text('{"status": "running"}')
    assert kr.leftovers(b) == [
        ".train.partial",
        "other/manifest.json (status running)",
        "stage/.labels.csv.abc-1-xxxxxxxx.tmp",
    ]


# -- the proofs (slow) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def proof_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill_resume")
    code = kr.snapshot_code(folder / "code")
    return folder, code


@pytest.fixture(scope="module")
def training(proof_inputs):
    folder, code = proof_inputs
    inputs = kr.prepare_inputs(folder / "inputs", ["train"], code)
    scenario = kr.train_scenario(inputs["train_data"], code=code)
    return scenario, kr.run_reference(scenario, folder / "train" / "reference")


@pytest.fixture(scope="module")
def pipeline(proof_inputs):
    folder, code = proof_inputs
    inputs = kr.prepare_inputs(folder / "inputs", ["pipeline"], code)
    scenario = kr.pipeline_scenario(inputs["pipeline_data"], inputs["line_ckpt"], code=code)
    return scenario, kr.run_reference(scenario, folder / "pipeline" / "reference")


def _check(trial: kr.Trial) -> None:
    record = trial.record()
    summary = {k: record[k] for k in ("seed", "kill_anchor", "kill_delay_s", "killed_at_s")}
    assert trial.finished, f"the resumed run did not finish: {record['attempts']}"
    assert not trial.leftovers, f"half-written files remain: {trial.leftovers}"
    assert trial.comparison is not None and trial.comparison.identical, (
        summary,
        trial.comparison.differences if trial.comparison else None,
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_training_killed_and_resumed_ends_like_the_uninterrupted_run(training, tmp_path, seed):
    """Same epochs and steps, weights, losses and val/test mAP within kr.TRAIN_TOLERANCE."""
    scenario, reference = training
    trial = kr.run_trial(scenario, reference, tmp_path / "run", seed)
    _check(trial)
    assert trial.comparison.max_weight_diff <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_the_pipeline_killed_and_resumed_writes_the_same_artifacts(pipeline, tmp_path, seed):
    """Every stage manifest (timestamps, durations, git commit aside), generated labels,
    detections, lines, checkpoints' weights and metrics identical."""
    scenario, reference = pipeline
    trial = kr.run_trial(scenario, reference, tmp_path / "run", seed)
    _check(trial)
    assert trial.comparison.max_metric_diff == 0.0 and trial.comparison.max_weight_diff == 0.0


@pytest.mark.slow
def test_training_killed_before_its_first_last_ckpt_starts_again_cleanly(training, tmp_path):
    """Killed after the first best.ckpt, before the first last.ckpt: nothing to resume, so the
    run starts again in the same folder and replaces best.ckpt (no best-v1.ckpt beside it)."""
    scenario, reference = training
    first = frozenset({"checkpoints/best.ckpt#1"})
    killed = kr.run_once(
        scenario, tmp_path, False, kr.KillPlan("checkpoints/best.ckpt#1", 0, first)
    )
    checkpoints = tmp_path / "run" / "checkpoints"
    # (a kill while last.ckpt is written leaves its temporary file, removed by the next save)
    assert killed.killed and [p.name for p in checkpoints.glob("[!.]*")] == ["best.ckpt"]
    assert kr.run_once(scenario, tmp_path, resume=True).returncode == 0
    comparison = kr.compare_trees(
        scenario.artifacts(reference.root),
        scenario.artifacts(tmp_path),
        "train",
        scenario.tolerance,
        scenario.ignored,
        roots=(tmp_path, reference.root),
    )
    assert comparison.identical, comparison.differences
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
