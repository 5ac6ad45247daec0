#!/usr/bin/env python
"""Write a committed results JSON from a finished cuneidet-train / cuneidet-classify run.

    .venv/bin/python scripts/results_json.py outputs/make_train/runs/<run> \\
        results/supervised_train_full.json --note "what it is, what limited it"

Takes the run's ``summary.json`` (command, git_commit, train_time_s, wall_time_s, hardware and
the test figures), adds the test metrics' recall and COCO cross-check, the best validation
score and the run folder (checkpoints stay in ``outputs/``: the command rebuilds them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cuneidet.utils.io import write_json

UNITS = (
    "mAP / AP in percent, paper protocol (VOC all-point AP at IoU > 0.5, +1 px IoU, each detection "
    "matched to its best-overlapping ground truth of any class, averaged over the classes with "
    "ground truth in test_full); crop accuracies in percent of the test_full sign crops"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder (holds summary.json)")
    parser.add_argument("out", type=Path, help="results/<name>.json")
    parser.add_argument("--note", default="", help="what the result is and what limited it")
    parser.add_argument("--units", default=UNITS, help="what the figures measure")
    parser.add_argument("--extra", default="{}", help="JSON object merged into the record")
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    metrics_path = args.run / "test" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    record = {
        **summary,
        "run_dir": str(args.run),
        "units": args.units,
        "val_best": summary.get("val_best"),
        "notes": args.note,
    }
    for key in ("precision", "recall", "num_det", "coco_map_agnostic"):
        if key in metrics:
            record[f"test_{key}"] = metrics[key]
    record.update(json.loads(args.extra))
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
