"""The CSDD's sign inventory: the label map (MZL number ↔ detector class, ``newLabels.json``), the
sign list (``cunei_mzl.csv``: name and Unicode glyph per MZL number) and the sign-width priors
(``unicode_sign_stats.csv``) that lay signs out along a line."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cuneidet.data.tables import csv_line, int_column, read_table, text_column
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError

MZL_COLUMNS = ("MesZL", "Sign Name", "codepoint_0")


@dataclass(frozen=True)
class LabelMap:
    """MZL sign numbers ↔ ``train_label`` plus sign names and Unicode glyphs.

    ``train_label`` 0 means unmapped / background. Non-zero labels are unique, so the inverse
    map is well defined.
    """

    mzl_to_label: Mapping[int, int]
    label_to_mzl: Mapping[int, int]
    names: Mapping[int, str] = field(default_factory=dict)
    glyphs: Mapping[int, str] = field(default_factory=dict)

    @property
    def max_label(self) -> int:
        """The largest ``train_label`` in use (374 for the CSDD)."""
        return max(self.label_to_mzl, default=0)

    @property
    def num_labels(self) -> int:
        """Number of non-zero labels."""
        return len(self.label_to_mzl)

    def train_label(self, mzl: int) -> int:
        """``train_label`` of an MZL number; 0 when the sign is unmapped."""
        return int(self.mzl_to_label.get(int(mzl), 0))

    def mzl(self, train_label: int) -> int:
        """MZL number of a non-zero ``train_label``."""
        label = self.validate(train_label)
        if label == 0:
            raise ConfigError("train_label 0 (background/unmapped) has no single MZL number")
        return int(self.label_to_mzl[label])

    def name(self, train_label: int) -> str:
        """Sign name: ``"background"`` for 0, ``"MZL<n>"`` when the sign list lacks the sign,
        ``"#<label>"`` for a label the map does not know (no error; see :meth:`validate`)."""
        label = int(train_label)
        if label == 0:
            return "background"
        if label not in self.label_to_mzl:
            return f"#{label}"
        return self.names.get(label) or f"MZL{self.label_to_mzl[label]}"

    def glyph(self, train_label: int) -> str:
        """Unicode string of the sign (code points concatenated); ``""`` if it has none."""
        return self.glyphs.get(int(train_label), "")

    def validate(self, train_label: int) -> int:
        """Return ``train_label`` as int if it is 0 or a known label, else raise ``ConfigError``."""
        try:
            label = int(train_label)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"train_label {train_label!r} is not an integer") from exc
        if label != train_label or (label != 0 and label not in self.label_to_mzl):
            raise ConfigError(
                f"Unknown train_label {train_label!r}: valid labels are 0 (background/unmapped) "
                f"and {self.num_labels} sign labels in 1…{self.max_label}"
            )
        return label

    @classmethod
    def from_files(cls, new_labels: Path, mzl_csv: Path | None = None) -> LabelMap:
        """Build from ``newLabels.json`` (index = MZL number) and optionally ``cunei_mzl.csv``."""
        mzl_to_label = read_new_labels(new_labels)
        label_to_mzl = {label: mzl for mzl, label in mzl_to_label.items()}
        names: dict[int, str] = {}
        glyphs: dict[int, str] = {}
        if mzl_csv is not None:
            signs = read_sign_list(mzl_csv)
            for label, mzl in label_to_mzl.items():
                if mzl in signs:
                    names[label], glyphs[label] = signs[mzl]
        return cls(mzl_to_label, label_to_mzl, names, glyphs)


def read_new_labels(path: Path) -> dict[int, int]:
    if not path.is_file():
        raise DataNotFoundError(f"CSDD file {path} not found; is the data directory complete?")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(values, dict):  # tolerate {"<mzl>": label}
        items = [(int(k), v) for k, v in values.items()]
    elif isinstance(values, list):
        items = list(enumerate(values))
    else:
        raise DataFormatError(f"{path}: expected a JSON list indexed by MZL number")
    mapping: dict[int, int] = {}
    seen: dict[int, int] = {}
    for mzl, label in items:
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise DataFormatError(f"{path}: entry {mzl} is {label!r}; expected an int ≥ 0")
        if label == 0:
            continue
        if label in seen:
            raise DataFormatError(
                f"{path}: train_label {label} is used by MZL {seen[label]} and {mzl}; "
                "non-zero labels must be unique"
            )
        seen[label] = mzl
        mapping[mzl] = label
    return mapping


def read_sign_list(path: Path) -> dict[int, tuple[str, str]]:
    """MZL number → (sign name, glyph string); the first row of a repeated MZL number wins."""
    frame = read_table(path, MZL_COLUMNS)
    mzl = int_column(frame, "MesZL", path)
    names = text_column(frame, "Sign Name")
    cp_columns = sorted(
        (c for c in frame.columns if re.fullmatch(r"codepoint_\d+", str(c))),
        key=lambda c: int(str(c).split("_")[1]),
    )
    signs: dict[int, tuple[str, str]] = {}
    for row, number in enumerate(mzl):
        if number in signs:
            continue
        glyph = "".join(_codepoint_char(frame[c].iloc[row], path, row) for c in cp_columns)
        signs[int(number)] = (names[row], glyph)
    return signs


def _codepoint_char(value: Any, path: Path, row: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or pd.isna(value):
        return ""
    text = str(value).strip()
    if not text:
        return ""
    match = re.fullmatch(r"(?:U\+|0x)?([0-9A-Fa-f]{4,6})", text)
    if match is None:
        raise DataFormatError(
            f"{path}: row {csv_line(row)} (1-based line incl. header) has code point "
            f"{text!r}; expected 'U+XXXXX'"
        )
    return chr(int(match.group(1), 16))


# -- the dataset -----------------------------------------------------------------------------


__all__ = ["MZL_COLUMNS", "LabelMap", "read_new_labels", "read_sign_list"]
