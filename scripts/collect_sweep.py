#!/usr/bin/env python
"""One CSV row per trial of a Hydra multirun (e.g. an Optuna study of hparams_search=…).

    .venv/bin/python scripts/collect_sweep.py outputs/two_stage_search/multiruns/<sweep> \\
        [--out results/two_stage_search.csv]

Columns: trial, its overrides (one column per swept key), the optimised validation score
(summary.json's val_best), epochs, steps and training time; sorted best first. Trials that did
not finish are listed with an empty score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from cuneidet.utils.io import write_text


def collect(sweep: Path) -> pd.DataFrame:
    rows = []
    for trial in sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ):
        row: dict = {"trial": int(trial.name)}
        overrides = trial / ".hydra" / "overrides.yaml"
        if overrides.is_file():
            for item in yaml.safe_load(overrides.read_text()) or []:
                key, _, value = str(item).partition("=")
                row[key.lstrip("+~")] = value
        summary = trial / "summary.json"
        if summary.is_file():
            data = json.loads(summary.read_text())
            row.update(
                score=data.get("val_best"),
                metric=data.get("optimized_metric"),
                epochs=data.get("epochs"),
                global_steps=data.get("global_steps"),
                train_time_s=data.get("train_time_s"),
            )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "score" in frame:
        frame = frame.sort_values("score", ascending=False, na_position="last")
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not args.sweep.is_dir():
        raise SystemExit(f"{args.sweep} is not a sweep folder (outputs/<task>/multiruns/<date>)")
    frame = collect(args.sweep)
    print(frame.to_string(index=False))
    if args.out:
        write_text(args.out, frame.to_csv(index=False))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
