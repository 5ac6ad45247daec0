"""``cuneidet-data``: inspect the CSDD (counts, missing photos) and draw annotated segments.

Examples::

    cuneidet-data check --json outputs/data_summary.json
    cuneidet-data show --list --set test_full
    cuneidet-data show --segment test/3 --out test_3.png
    cuneidet-data show --tablet P334894 --view Obv --set train_full --out p334894.png

Exit codes: 0 success; 1 ``check --strict`` found missing photos; 2 bad input or data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from cuneidet.data.csdd import CSDD
from cuneidet.data.labels import LabelMap
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.segments import (
    PhotoCache,
    load_segment_image,
    points_segment_to_scaled,
)
from cuneidet.data.sources import build_photo_source
from cuneidet.data.summaries import annotated_tablets, dataset_summary
from cuneidet.data.tables import parse_segment_key
from cuneidet.data.views import AnnotatedSegment, segment_from_row
from cuneidet.errors import ConfigError, CuneidetError
from cuneidet.utils.io import atomic_path, write_json

log = logging.getLogger(__name__)

IMAGE_SOURCES = ("folder", "cdli", "folder+cdli")
FONT_RELATIVE = Path("fonts") / "NotoSansCuneiform-Regular.ttf"
MISSING_SHOWN = 10


# -- argument parsing ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cuneidet-data``."""
    parser = argparse.ArgumentParser(prog="cuneidet-data", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder that contains csdd/ (default: auto-detect)")
    parser.add_argument("--image-source", choices=IMAGE_SOURCES, default="folder")
    parser.add_argument("--image-dir", help="photo folder (default: <data-dir>/csdd/images)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="dataset counts and missing photographs")
    check.add_argument("--json", type=Path, help="also write the summary as JSON (atomically)")
    check.add_argument("--strict", action="store_true", help="exit 1 if photos are missing")

    show = commands.add_parser("show", help="draw a segment with its boxes, glyphs and lines")
    target = show.add_mutually_exclusive_group(required=True)
    target.add_argument("--segment", help="segment key <collection>/<segm_idx>, e.g. test/3")
    target.add_argument("--tablet", help="tablet_CDLI, e.g. P334894 (with --view)")
    target.add_argument("--list", action="store_true", help="list annotated segment keys")
    show.add_argument("--view", help="view_desc of --tablet (Obv, Rev...)")
    show.add_argument("--set", dest="box_set", help="box set to draw (default: first with boxes)")
    show.add_argument("--out", type=Path, help="output PNG (default: show_<coll>_<idx>.png)")
    show.add_argument("--no-lines", action="store_true", help="do not draw line annotations")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cuneidet-data`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        csdd = CSDD(resolve_data_dir(args.data_dir))
        if args.command == "check":
            return run_check(args, csdd)
        return run_show(args, csdd)
    except CuneidetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _photo_source(args: argparse.Namespace, csdd: CSDD) -> Any:
    return build_photo_source(args.image_source, csdd.data_dir, folder=args.image_dir)


# -- check -----------------------------------------------------------------------------------


def run_check(args: argparse.Namespace, csdd: CSDD) -> int:
    """``check``: print the dataset summary; exit 1 with ``--strict`` if photos are missing."""
    try:
        source = _photo_source(args, csdd)
    except CuneidetError as exc:
        log.error("cannot open the photo source: %s", exc)
        source = None
    summary = dataset_summary(csdd, source)
    if source is None:
        tablets = annotated_tablets(csdd)
        summary["photos"] = {
            "source": None,
            "error": "photo source unavailable (see the log)",
            "tablets": len(tablets),
            "missing_count": len(tablets),
            "missing": tablets,
        }
    print_summary(summary)
    if args.json is not None:
        write_json(args.json, summary)
        print(f"summary written to {args.json}")
    missing = summary["photos"]["missing_count"]
    return 1 if (args.strict and missing) else 0


def print_summary(summary: dict[str, Any]) -> None:
    """Render the summary of :func:`~cuneidet.data.summaries.dataset_summary` with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, Console().width))
    console.print(f"CSDD at {summary['data_dir']}", soft_wrap=True, markup=False)
    sets = Table(title="Box sets (in range: 1 ≤ train_label < 240)")
    for name in ("set", "rows", "in-range boxes", "in-range, assigned", "segments", "tablets"):
        sets.add_column(name, justify="left" if name == "set" else "right")
    for name, s in summary["box_sets"].items():
        sets.add_row(
            name,
            *(
                f"{s[k]:,}"
                for k in (
                    "rows",
                    "in_range_boxes",
                    "in_range_boxes_assigned",
                    "segments",
                    "tablets",
                )
            ),
        )
    console.print(sets)
    colls = Table(title="Collections")
    for name in ("collection", "segments", "assigned", "tablets", "transliterated signs"):
        colls.add_column(name, justify="left" if name == "collection" else "right")
    for name, c in summary["collections"].items():
        keys = ("segments", "assigned_segments", "tablets", "transliterated_signs")
        colls.add_row(name, *(f"{c[k]:,}" for k in keys))
    console.print(colls)
    weak = summary["weak_set"]
    console.print(
        f"Weak set ({', '.join(weak['collections']) or 'no weak collections'}): "
        f"{weak['segments']:,} segments, {weak['tablets']:,} tablets, "
        f"{weak['signs']:,} signs",
        soft_wrap=True,
        markup=False,
    )
    _print_photos(console, summary.get("photos"))


def _print_photos(console: Any, photos: dict[str, Any] | None) -> None:
    from rich.markup import escape

    if photos is None:
        return
    head = escape(
        f"Photos ({photos['source'] or 'no source'}): {photos['tablets']} annotated tablets, "
    )
    if not photos["missing_count"]:
        console.print(head + "none missing", soft_wrap=True)
        return
    shown = escape(", ".join(photos["missing"][:MISSING_SHOWN]))
    more = " …" if photos["missing_count"] > MISSING_SHOWN else ""
    text = head + f"[bold red]{photos['missing_count']} missing[/]: {shown}{more}"
    console.print(text, soft_wrap=True)


# -- show ------------------------------------------------------------------------------------


def run_show(args: argparse.Namespace, csdd: CSDD) -> int:
    """``show``: list segment keys, or draw one segment into a PNG."""
    if args.box_set is not None and args.box_set not in csdd.box_sets:
        raise ConfigError(f"Unknown box set {args.box_set!r}; valid: {', '.join(csdd.box_sets)}")
    if args.list:
        print_segment_list(csdd, [args.box_set] if args.box_set else None)
        return 0
    if args.view and not args.tablet:
        raise ConfigError("--view goes with --tablet (a --segment key already names the view)")
    row = find_segment(csdd, segment=args.segment, tablet=args.tablet, view=args.view)
    segment, set_name = segment_with_boxes(csdd, row, args.box_set)
    lines = [] if args.no_lines else segment_lines(csdd, segment)
    image = load_segment_image(PhotoCache(_photo_source(args, csdd)), segment)
    out = args.out or Path(f"show_{segment.collection}_{segment.segm_idx}.png")
    font = csdd.data_dir / FONT_RELATIVE
    caption = (
        f"{segment.name} ({segment.key}) {set_name or 'no boxes'}: {len(segment.labels)} boxes"
    )
    render_segment(image, segment, csdd.labels, lines, out, font_path=font, caption=caption)
    print(f"wrote {out}")
    return 0


def _list_hint(box_set: str | None = None) -> str:
    option = f" --set {box_set}" if box_set else ""
    return f"List the annotated segments with: cuneidet-data show --list{option}"


def find_segment(
    csdd: CSDD, segment: str | None = None, tablet: str | None = None, view: str | None = None
) -> pd.Series:
    """The assigned segments row chosen by key, or by tablet (+ view)."""
    if segment is not None:
        collection, segm_idx = parse_segment_key(segment)
        if collection not in csdd.collections:
            raise ConfigError(
                f"Unknown collection {collection!r} in segment key {segment!r}; valid: "
                f"{', '.join(csdd.collections)}. {_list_hint()}"
            )
        try:
            row = csdd.segment(collection, segm_idx)
        except ConfigError as exc:
            raise ConfigError(f"{exc}. {_list_hint()}") from exc
        if not row["assigned"]:
            raise ConfigError(
                f"Segment {segment} ({row['tablet_CDLI']}) is not assigned to a transliteration "
                f"side and has no scale. {_list_hint()}"
            )
        return row
    if not tablet:
        raise ConfigError("Give --segment KEY, or --tablet CDLI [--view VIEW], or --list")
    assigned = csdd.segments(assigned_only=True)
    rows = assigned[assigned["tablet_CDLI"] == tablet]
    if rows.empty:
        raise ConfigError(f"No assigned segment of tablet {tablet!r}. {_list_hint()}")
    if view:
        matches = rows[rows["view_desc"].str.lower() == view.lower()]
        if matches.empty:
            views = ", ".join(
                f"{r.view_desc or '?'} ({r.collection}/{r.segm_idx})" for r in rows.itertuples()
            )
            raise ConfigError(f"Tablet {tablet} has no view {view!r}; it has: {views}")
        rows = matches
    if len(rows) > 1:
        keys = ", ".join(
            f"{r.collection}/{r.segm_idx} ({r.view_desc or '?'})" for r in rows.itertuples()
        )
        raise ConfigError(
            f"Tablet {tablet} has several segments: {keys}; pick one with --view or --segment"
        )
    return rows.iloc[0]


def segment_with_boxes(
    csdd: CSDD, row: pd.Series, box_set: str | None
) -> tuple[AnnotatedSegment, str | None]:
    """The segment with the boxes of ``box_set`` (default: the first set that has boxes on it)."""
    candidates = [box_set] if box_set else list(csdd.box_sets)
    for name in candidates:
        raw = csdd.raw_boxes(name)
        mine = raw[(raw["collection"] == row["collection"]) & (raw["segm_idx"] == row["segm_idx"])]
        if not mine.empty:
            boxes = mine[["rx1", "ry1", "rx2", "ry2"]].to_numpy(np.float32)
            labels = mine["train_label"].to_numpy(np.int64)
            return segment_from_row(row, boxes, labels), name
    key = f"{row['collection']}/{row['segm_idx']}"
    where = f"box set {box_set}" if box_set else "any box set"
    log.warning("segment %s has no boxes in %s; drawing the image only", key, where)
    return segment_from_row(row), None


def segment_lines(csdd: CSDD, segment: AnnotatedSegment) -> list[np.ndarray]:
    """Line polylines of ``segment`` in *scaled* coordinates (point order as in the file)."""
    polylines: list[np.ndarray] = []
    for split in csdd.line_splits:
        points = csdd.lines(split)
        mine = points[
            (points["collection"] == segment.collection) & (points["segm_idx"] == segment.segm_idx)
        ]
        for _, line in mine.groupby("line_idx", sort=True):
            xy = line[["x", "y"]].to_numpy(np.float64)
            polylines.append(points_segment_to_scaled(xy, segment.scale))
    return polylines


def print_segment_list(csdd: CSDD, sets: Sequence[str] | None = None) -> None:
    """Print the keys of the segments with boxes in ``sets`` (all box sets by default)."""
    from rich.console import Console
    from rich.table import Table

    names = list(sets) if sets else list(csdd.box_sets)
    assigned = csdd.segments(assigned_only=True)
    table = Table(title=f"Segments with boxes in {', '.join(names)}")
    for column in ("key", "tablet", "view", "scale", "boxes", "sets"):
        table.add_column(column, justify="right" if column in ("scale", "boxes") else "left")
    frames = []
    for name in names:
        raw = csdd.raw_boxes(name)
        counts = raw[raw["segm_idx"] >= 0].groupby(["collection", "segm_idx"]).size()
        frames.append(counts.rename("boxes").reset_index().assign(set=name))
    if frames and any(len(f) for f in frames):
        merged = pd.concat(frames, ignore_index=True)
        grouped = merged.groupby(["collection", "segm_idx"], sort=True).agg(
            boxes=("boxes", "max"), sets=("set", lambda s: ",".join(s))
        )
        joined = grouped.reset_index().merge(assigned, on=["collection", "segm_idx"], how="inner")
        for r in joined.itertuples():
            key = f"{r.collection}/{r.segm_idx}"
            table.add_row(key, r.tablet_CDLI, r.view_desc, f"{r.scale:.2f}", str(r.boxes), r.sets)
    Console(width=max(100, Console().width)).print(table)


# -- rendering -------------------------------------------------------------------------------


def _cuneiform_font(font_path: Path | None) -> tuple[Any, set[int]]:
    """``(FontProperties, code points)`` of the cuneiform font, or ``(None, set())``."""
    if font_path is None or not Path(font_path).is_file():
        log.info("cuneiform font %s not found; drawing sign names instead of glyphs", font_path)
        return None, set()
    from matplotlib.font_manager import FontProperties
    from matplotlib.ft2font import FT2Font

    try:
        charmap = set(FT2Font(str(font_path)).get_charmap())
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("cannot read font %s (%s); drawing sign names instead", font_path, exc)
        return None, set()
    return FontProperties(fname=str(font_path)), charmap


def _label_text(labels: LabelMap, label: int, charmap: set[int]) -> tuple[str, bool]:
    """``(text, is_glyph)`` for a box: the glyph if the font has it, else the sign name."""
    try:
        glyph = labels.glyph(label)
        name = labels.name(label)
    except ConfigError:
        return f"#{label}", False
    if glyph and charmap and all(ord(ch) in charmap for ch in glyph):
        return glyph, True
    return name, False


def _box_style(label: int) -> dict[str, Any]:
    from matplotlib import colormaps

    if label == 0:
        return {"edgecolor": "white", "linestyle": "--"}
    if label >= 240:
        return {"edgecolor": "magenta", "linestyle": ":"}
    return {"edgecolor": colormaps["tab20"](label % 20), "linestyle": "-"}


def render_segment(
    image: Image.Image,
    segment: AnnotatedSegment,
    labels: LabelMap,
    lines: Sequence[np.ndarray],
    out: Path,
    font_path: Path | None = None,
    caption: str | None = None,
    dpi: int = 100,
) -> Path:
    """Draw the scaled gray segment, its boxes with glyphs (or names) and lines into a PNG.

    Colours: in-range labels by class, label 0 white dashed, labels ≥ 240 magenta dotted;
    lines yellow. Written atomically.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    width, height = image.size
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(np.asarray(image.convert("L")), cmap="gray", vmin=0, vmax=255)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    boxes = segment.scaled_boxes()
    font, charmap = _cuneiform_font(font_path)
    heights = boxes[:, 3] - boxes[:, 1]
    text_px = float(np.clip(0.3 * np.median(heights), 8, 48)) if len(boxes) else 12.0
    for box, label in zip(boxes, segment.labels, strict=True):
        x1, y1, x2, y2 = (float(v) for v in box)
        style = _box_style(int(label))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=1.5, **style))
        text, is_glyph = _label_text(labels, int(label), charmap)
        above = y1 > text_px + 2  # else write inside the box, at its top
        ax.text(
            x1,
            y1 - 1 if above else y1 + 1,
            text,
            fontproperties=font if is_glyph else None,
            fontsize=text_px * 72 / dpi * (1.0 if is_glyph else 0.6),
            color=style["edgecolor"],
            va="bottom" if above else "top",
            ha="left",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "edgecolor": "none"},
        )
    for polyline in lines:
        ax.plot(polyline[:, 0], polyline[:, 1], color="yellow", linewidth=2, marker="o", ms=3)
    if caption:
        ax.text(4, 4, caption, color="cyan", fontsize=8, va="top", ha="left")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
