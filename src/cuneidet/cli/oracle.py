"""``cuneidet-oracle predict image.png``: the ten most likely characters of an oracle-bone
drawing, as a table (rank, character, probability). Train the model with
``cuneidet-train experiment=oracle_bone``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cuneidet.errors import CuneidetError, ImageLoadError


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as handle:
            handle.load()
            return np.asarray(handle.convert("RGBA"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageLoadError(
            f"cannot read {path} as an image ({error}); give a PNG or JPEG drawing: dark "
            "strokes on a light ground"
        ) from error


def predict(args: argparse.Namespace, console: Console) -> None:
    image = _read_image(args.image)  # the cheap check first: a bad file fails at once

    from cuneidet.oracle.data import charset, read_index  # torch: seconds to import
    from cuneidet.oracle.predict import load_oracle_model

    expected = None
    if args.index:
        expected = charset(read_index(Path(args.index)))
    model = load_oracle_model(args.ckpt, expected)
    ranking, _ = model.rank(image, args.top)
    table = Table(title=f"{args.image.name}: the {len(ranking)} most likely characters")
    table.add_column("rank", justify="right")
    table.add_column("character")
    table.add_column("probability", justify="right")
    for row in ranking:
        table.add_row(str(row["rank"]), row["name"], f"{100 * row['probability']:.4g} %")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cuneidet-oracle", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ranking = commands.add_parser("predict", help="rank the characters an image shows")
    ranking.add_argument("image", type=Path, help="a drawing: dark strokes on a light ground")
    ranking.add_argument(
        "--ckpt",
        type=Path,
        default=Path("outputs/oracle_bone/checkpoints/best.ckpt"),
        help="an oracle-bone checkpoint (default: the one experiment=oracle_bone writes)",
    )
    ranking.add_argument("--top", type=int, default=10, help="how many characters to list")
    ranking.add_argument(
        "--index",
        type=Path,
        default=None,
        help="a JiaGuWen folder: refuse a model trained on another character set",
    )
    args = parser.parse_args(argv)
    console = Console()
    try:
        predict(args, console)
    except CuneidetError as error:
        # not wrapped (paths stay whole), not read as markup ("[x1, y1]" is no style)
        console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
