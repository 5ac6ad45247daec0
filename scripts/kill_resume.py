#!/usr/bin/env python
"""Kill-and-resume proof: SIGKILL training and the pipeline at random points, then resume.

Compares the finished artifacts with those of an uninterrupted run:

    .venv/bin/python scripts/kill_resume.py --runs 10 --kind both --out results/kill_resume.json

For each kind: one uninterrupted reference run, one uninterrupted control run (the reference's
own reproducibility), then ``--runs`` trials with seeds ``--seed0``, ``--seed0 + 1``, ...: each
kills the command (its whole process group) at a point drawn from its seed (an anchor, the start
or one of the reference's checkpoint/manifest events, then a random delay within the time to the
next event), resumes it until it finishes and compares every artifact (see tests/kill_resume.py:
what is compared, what is ignored and why, the tolerance). Prints a table, writes the JSON report
atomically after every trial, and exits 1 if a trial did not finish, differs beyond the
tolerance, or left a half-written file behind.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import kill_resume as kr  # noqa: E402

from cuneidet.utils.io import write_json  # noqa: E402


def _git_commit() -> str | None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return f"{commit}-dirty" if git("status", "--porcelain", "--untracked-files=no") else commit


def _versions() -> dict[str, str]:
    import numpy
    import pytorch_lightning
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "numpy": numpy.__version__,
    }


def _row(record: dict[str, Any]) -> str:
    comparison = record["comparison"] or {}
    if record["kill_anchor"] is None:
        point = "(control: not killed)"
    else:
        point = f"{record['kill_mode']}: {record['kill_anchor']} +{record['kill_delay_s']:.2f}s"
    killed = f"{record['killed_at_s']:.1f}s" if record["killed_at_s"] is not None else "-"
    return (
        f"{record['kind']:<9}{record['seed']!s:>8}  {point:<56}{killed:>8}"
        f"{record['resume_attempts']:>8}  {record['ok']!s:<6}"
        f"{comparison.get('max_metric_diff', float('nan')):>12.3g}"
        f"{comparison.get('max_weight_diff', float('nan')):>12.3g}"
        f"{len(record['leftovers']):>6}{record['seconds']:>8.1f}"
    )


HEADER = (
    f"{'kind':<9}{'seed':>8}  {'kill point (mode: anchor + delay)':<56}"
    f"{'kill at':>8}{'resumes':>8}  "
    f"{'ok':<6}{'metric diff':>12}{'weight diff':>12}{'left':>6}{'secs':>8}"
)


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    comparisons = [r["comparison"] or {} for r in records]
    return {
        "runs": len(records),
        "killed": sum(r["killed"] > 0 for r in records),
        "finished": sum(r["finished"] for r in records),
        "identical": sum(r["identical"] for r in records),
        "ok": sum(r["ok"] for r in records),
        "resume_attempts": sum(r["resume_attempts"] for r in records),
        "with_leftovers": sum(bool(r["leftovers"]) for r in records),
        "with_tmp_orphans": sum(bool(r["tmp_orphans"]) for r in records),
        "max_metric_diff": max((c.get("max_metric_diff", 0.0) for c in comparisons), default=0),
        "max_weight_diff": max((c.get("max_weight_diff", 0.0) for c in comparisons), default=0),
        "files_compared_per_run": max((c.get("files", 0) for c in comparisons), default=0),
        "seconds": round(sum(r["seconds"] for r in records), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="killed runs per kind")
    parser.add_argument("--kind", choices=["train", "pipeline", "both"], default="both")
    parser.add_argument("--seed0", type=int, default=0, help="seed of the first killed run")
    parser.add_argument(
        "--kills", type=int, default=1, help="kills per run (later ones hit resumes)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "kill_resume.json")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--no-control", action="store_true", help="skip the control runs")
    args = parser.parse_args()
    # a terminated script ends its runs too (each runs in its own process group)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    kinds = ["train", "pipeline"] if args.kind == "both" else [args.kind]
    work = args.work or Path(tempfile.mkdtemp(prefix="kill_resume_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "what": (
            "cuneidet-train and cuneidet-pipeline killed with SIGKILL (whole process group) at "
            "random points and resumed (train: ckpt_path=last, same hydra.run.dir; pipeline: the "
            "same command and output root) until finished; every artifact compared with an "
            "uninterrupted reference run"
        ),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "hardware": f"cpu: {platform.machine()}, {os.cpu_count()} threads; "
        "torch threads 1 (OMP_NUM_THREADS=1)",
        "versions": _versions(),
        "kill_points": (
            "per seed, a fair coin: (anchor) an anchor drawn uniformly from {process start} and "
            "the reference's events (a watched file written: train: best.ckpt, last.ckpt per "
            "epoch, test/metrics.json, summary.json; pipeline: each stage's manifest when it "
            "starts and finishes, a training stage's last.ckpt per epoch, metrics.csv), then a "
            "delay drawn uniformly within the reference's time from it to its next event (or its "
            "end); or (time) a moment drawn uniformly within the reference's duration, as its "
            "last anchor and the delay since. The killed run waits for that event (or a later "
            f"one of the reference's), then the delay. {args.kills} kill(s) per run; later ones "
            "hit a resumed run at a uniform time within 80 % of the reference's duration"
        ),
        "tolerance": {
            "train": {
                **kr.dataclasses.asdict(kr.TRAIN_TOLERANCE),
                "rule": "|resumed - reference| <= atol + rtol * |reference| for every number "
                "(metrics, losses, weights); epochs and global steps exactly",
            },
            "pipeline": {**kr.dataclasses.asdict(kr.EXACT), "rule": "identical"},
        },
        "ignored": {
            "both": kr.IGNORED,
            "train": kr.IGNORED_TRAIN,
            "pipeline": kr.IGNORED_PIPELINE,
            "files": {
                "*.log, .hydra/*": "Hydra's job log and config copy (not artifacts)",
                "report.html": "existence only: it tabulates train_time_s (its figures are in "
                "metrics.csv and summary.json, compared)",
            },
        },
        "settings": {},
        "references": {},
        "controls": {},
        "trials": [],
        "summary": {},
        "complete": False,
    }

    def save() -> None:
        report["wall_time_s"] = round(time.monotonic() - started, 1)
        write_json(args.out, report)  # atomic: a temporary file renamed onto args.out

    code = kr.snapshot_code(work / "code")
    print(f"working in {work}; inputs (synthetic CSDD, line network for the pipeline) ...")
    inputs = kr.prepare_inputs(work / "inputs", kinds, code)
    failures = 0
    print(HEADER)
    for kind in kinds:
        if kind == "train":
            scenario = kr.train_scenario(inputs["train_data"], code=code)
        else:
            scenario = kr.pipeline_scenario(inputs["pipeline_data"], inputs["line_ckpt"], code=code)
        report["settings"][kind] = scenario.overrides
        reference = kr.run_reference(scenario, work / kind / "reference")
        report["references"][kind] = {"seconds": reference.seconds, "events": reference.timeline}
        if not args.no_control:
            control = kr.run_trial(scenario, reference, work / kind / "control", -1, kills=0)
            record = {**control.record(), "seed": "control"}
            report["controls"][kind] = record
            print(_row(record), flush=True)
            failures += not control.ok
            save()
        records = []
        for seed in range(args.seed0, args.seed0 + args.runs):
            trial = kr.run_trial(
                scenario, reference, work / kind / f"seed_{seed}", seed, args.kills
            )
            record = trial.record()
            records.append(record)
            report["trials"].append(record)
            failures += not trial.ok
            print(_row(record), flush=True)
            for difference in (record["comparison"] or {}).get("differences", [])[:5]:
                print(f"    {difference}")
            for leftover in record["leftovers"][:5]:
                print(f"    left behind: {leftover}")
            report["summary"][kind] = _summary(records)
            save()
            if not args.keep:  # a trial's folder holds ~0.5 GB of checkpoints
                shutil.rmtree(work / kind / f"seed_{seed}", ignore_errors=True)
    report["complete"] = True
    report["failures"] = failures
    save()
    print()
    for kind, summary in report["summary"].items():
        print(
            f"{kind}: {summary['ok']}/{summary['runs']} ok ({summary['killed']} killed, "
            f"{summary['identical']} identical), max metric diff {summary['max_metric_diff']:.3g}, "
            f"max weight diff {summary['max_weight_diff']:.3g}, {summary['seconds']:.0f} s"
        )
    print(f"report: {args.out} ({report['wall_time_s']:.0f} s)")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
