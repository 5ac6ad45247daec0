#!/usr/bin/env python
"""Choose a two-stage recogniser's inference settings on the VALIDATION tablets (never test).

    .venv/bin/python scripts/select_recogniser.py --ckpt <run>/checkpoints/best.ckpt \\
        [--top-k 5 10] [--tta none 1.15,1.3,1.5] [--loc-power 1.0] \\
        [--cut-on argmax expected] [--cut-level 4 5 6] [--min-pixels 1 2] \\
        [--out results/recogniser_selection.csv]

Rebuilds the checkpoint, loads the held-out train_full tablets of its training split (the
checkpoint's working scale, the default split settings) and runs Lightning's validation loop for
every top_k × test-time crop contexts × localisation-score exponent (× energy cut level ×
minimum component size for a watershed localiser); prints val/mAP, global AP and the
localiser's AP, best first. The settings are attributes of the recogniser: use the winners as
``model.detector.top_k=…`` / ``tta_contexts=[…]`` / ``loc_power=…`` when training, or
``recogniser.<name>=…`` and ``watershed.cut_level=…`` / ``watershed.min_pixels=…`` for
cuneidet-eval.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
from omegaconf import OmegaConf

from cuneidet.models.checkpoint import rebuild_module, set_watershed
from cuneidet.models.two_stage import TwoStageModule
from cuneidet.models.watershed import WatershedHead
from cuneidet.utils.instantiate import instantiate
from cuneidet.utils.io import write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--top-k", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--tta", nargs="+", default=["none", "1.15,1.3,1.5"])
    parser.add_argument("--loc-power", type=float, nargs="+", default=[1.0])
    parser.add_argument("--cut-level", type=int, nargs="+", help="watershed localisers only")
    parser.add_argument("--min-pixels", type=int, nargs="+", help="watershed localisers only")
    parser.add_argument("--cut-on", nargs="+", help="watershed: argmax and/or expected")
    parser.add_argument("--out")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    module = rebuild_module(args.ckpt)
    if not isinstance(module, TwoStageModule):
        raise SystemExit(f"{args.ckpt} holds a {type(module).__name__}, not a two-stage recogniser")
    # the run's own data settings: the same validation tablets and working scale
    run_config = Path(args.ckpt).resolve().parents[1] / "config_resolved.yaml"
    if not run_config.is_file():
        raise SystemExit(f"{run_config} not found: give a checkpoint inside its cuneidet-train run")
    data_cfg = OmegaConf.load(run_config).data
    data = instantiate(data_cfg, num_workers=0, progress=False)
    data.setup("validate")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    head = module.detector.localiser.head
    watershed = isinstance(head, WatershedHead)
    if (args.cut_level or args.min_pixels or args.cut_on) and not watershed:
        raise SystemExit(f"--cut-level/--min-pixels/--cut-on need a watershed localiser: {head!r}")
    cut_levels = args.cut_level or [getattr(head, "cut_level", None)]
    min_pixels = args.min_pixels or [getattr(head, "min_pixels", None)]
    cut_on = args.cut_on or [getattr(head, "cut_on", None)]
    rows = []
    grid = itertools.product(args.top_k, args.tta, args.loc_power, cut_on, cut_levels, min_pixels)
    for top_k, tta, power, on, cut_level, pixels in grid:
        decoding = {"cut_on": on, "cut_level": cut_level, "min_pixels": pixels}
        if watershed:
            set_watershed(module, decoding, args.ckpt)
        module.detector.top_k = top_k
        module.detector.loc_power = power
        contexts = None if tta == "none" else [float(c) for c in tta.split(",")]
        module.detector.tta_contexts = contexts or [module.detector.context]
        metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
        rows.append(
            {
                "top_k": top_k,
                "tta_contexts": tta,
                "loc_power": power,
                **(decoding if watershed else {}),
                "val_mAP": round(metrics["val/mAP"], 3),
                "val_global_AP": round(metrics["val/global_AP"], 3),
                "val_loc_AP": round(metrics["val/loc_AP"], 3),
            }
        )
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows).sort_values("val_mAP", ascending=False)
    print(frame.to_string(index=False))
    if args.out:
        write_text(args.out, frame.to_csv(index=False))


if __name__ == "__main__":
    main()
