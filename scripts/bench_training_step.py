#!/usr/bin/env python
"""Where a training step's time goes, on the real data, for one or more recipes.

    .venv/bin/python scripts/bench_training_step.py      # paper detector vs two_stage_cpu
    .venv/bin/python scripts/bench_training_step.py --recipe experiment=one_stage_cpu --steps 5

For each recipe (Hydra overrides of cuneidet-train, separated by spaces; the memory format follows
``callbacks.channels_last.enabled``): the one-off data set-up
(decode, segment crop, scale, grayscale of every photo), then per batch the loader work (tile or
crop cut + augmentation, measured in the main process), collate, forward, loss (with anchor
matching), backward and optimizer step, each the median over --steps batches, and the tiles per
second of the whole step. Threads: torch as set here (--threads), OpenCV off in the loader.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import cv2
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cuneidet.config import config_dir
from cuneidet.utils.instantiate import instantiate
from cuneidet.utils.memory_format import to_channels_last
from cuneidet.utils.timing import report_figures


def _median(fn: Any, steps: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(steps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _compose(overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[*overrides, "data.progress=false", "data.num_workers=0"],
            return_hydra_config=False,
        )
    OmegaConf.set_struct(cfg, False)
    cfg.paths.output_dir = "/tmp/bench_training_step"
    cfg.hydra = {"runtime": {"output_dir": "/tmp"}}
    return cfg


def _batches(datamodule: Any, two_stage: bool) -> tuple[Any, Any, Any]:
    """(tile dataset, crop dataset or None, collate) for timing the loader work."""
    from cuneidet.data.datasets import collate_detection

    tiles = datamodule.train_dataset(num_classes=2**31 - 1 if two_stage else None)
    crops = datamodule.crop_train_loader().dataset if two_stage else None
    return tiles, crops, collate_detection


def bench(recipe: str, steps: int) -> dict[str, float]:
    overrides = recipe.split()
    cfg = _compose(overrides)
    module = instantiate(cfg.model)
    two_stage = type(module).__name__ == "TwoStageModule"
    datamodule = instantiate(cfg.data, **module.datamodule_arguments())
    start = time.perf_counter()
    datamodule.setup("fit")
    setup_s = time.perf_counter() - start
    tiles, crops, collate = _batches(datamodule, two_stage)
    batch_size = int(cfg.data.batch_size)
    crop_batch = int(cfg.data.get("crop_batch_size") or 0)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(tiles), generator=generator).tolist()

    def load_tiles(state: dict[str, int] = {"i": 0}) -> list[dict]:  # noqa: B006
        items = [tiles[order[(state["i"] + k) % len(order)]] for k in range(batch_size)]
        state["i"] += batch_size
        return items

    figures: dict[str, float] = {"setup_s": setup_s, "train_tiles": len(tiles)}
    figures["tile_load_s"], items = _median(load_tiles, steps)
    figures["collate_s"], batch = _median(lambda: collate(items), steps)
    from cuneidet.classify.data import collate_crops

    crop_batch_data = None
    if two_stage:
        crop_items = [crops[k] for k in range(crop_batch)]
        figures["crop_load_s"], crop_items = _median(
            lambda: [crops[k] for k in range(crop_batch)], steps
        )
        crop_batch_data = collate_crops(crop_items)

    channels_last = bool(OmegaConf.select(cfg, "callbacks.channels_last.enabled", default=False))
    if channels_last:
        to_channels_last(module)
    figures["channels_last"] = float(channels_last)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.train()
    images = batch["images"].contiguous()
    size = tuple(images.shape[-2:])
    detector = module.detector.localiser if two_stage else module.detector
    targets = batch["targets"]
    if two_stage:
        from cuneidet.models.two_stage import agnostic

        targets = agnostic(targets)

    def forward() -> Any:
        out = detector(images)
        if two_stage:
            return out, module.detector.classifier(crop_batch_data["images"])
        return out, None

    def loss_of(outputs: Any) -> torch.Tensor:
        (loc, cls), logits = outputs
        loss = detector.loss(loc, cls, targets, size)["loss"]
        if logits is not None:
            loss = loss + torch.nn.functional.cross_entropy(logits, crop_batch_data["labels"])
        return loss

    fwd, loss_t, bwd, opt = [], [], [], []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        outputs = forward()
        t1 = time.perf_counter()
        loss = loss_of(outputs)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        fwd.append(t1 - t0)
        loss_t.append(t2 - t1)
        bwd.append(t3 - t2)
        opt.append(t4 - t3)
    for name, values in (
        ("forward_s", fwd),
        ("loss_s", loss_t),
        ("backward_s", bwd),
        ("optim_s", opt),
    ):
        figures[name] = statistics.median(values[1:])  # first step warms up
    network = figures["forward_s"] + figures["loss_s"] + figures["backward_s"] + figures["optim_s"]
    loader = figures["tile_load_s"] + figures["collate_s"] + figures.get("crop_load_s", 0.0)
    figures["network_s"] = network
    figures["loader_s"] = loader
    figures["tiles_per_s_serial"] = batch_size / (network + loader)
    # with the loader in worker processes the step costs the network (on 2 cores, roughly)
    figures["tiles_per_s_network_only"] = batch_size / network
    figures["input_px"] = float(images.shape[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipe",
        action="append",
        help="Hydra overrides of one recipe (repeatable); default: paper detector, two_stage_cpu",
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the ratios to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(0)
    recipes = args.recipe or [
        # the paper's detector as make_train ran it before
        "model=detector data.batch_size=8 callbacks.channels_last.enabled=false",
        "experiment=two_stage_cpu callbacks.channels_last.enabled=false",
        "experiment=two_stage_cpu",  # channels-last weights (callbacks=default)
    ]
    results = {}
    for recipe in recipes:
        results[recipe] = bench(recipe, args.steps)
        print(f"\n== {recipe}")
        for key, value in results[recipe].items():
            print(f"  {key:<26} {value:10.4f}")
    if len(recipes) >= 2:
        first, last = results[recipes[0]], results[recipes[-1]]
        print("\n== speed-up of the last recipe over the first")
        report_figures(
            {
                "tiles/s ratio (serial)": round(
                    last["tiles_per_s_serial"] / first["tiles_per_s_serial"], 2
                ),
                "tiles/s ratio (network)": round(
                    last["tiles_per_s_network_only"] / first["tiles_per_s_network_only"], 2
                ),
            },
            args.json,
        )


if __name__ == "__main__":
    main()
