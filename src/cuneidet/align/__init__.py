"""cuneidet.align: transliteration lines and their assignment to detected text lines."""

from cuneidet.align.line_assignment import (
    BEAD_COSTS,
    LINE_ASSIGNMENT_METHODS,
    Bead,
    assign_by_order,
    assign_gale_church,
    assign_lines,
    assignment_from_beads,
    gale_church,
    match_cost,
)
from cuneidet.align.transliteration import (
    SIGN_HEIGHT,
    TransliterationLine,
    ViewTransliteration,
    prepare_transliteration,
    prior_widths,
    view_transliteration,
)

__all__ = [
    "BEAD_COSTS",
    "LINE_ASSIGNMENT_METHODS",
    "SIGN_HEIGHT",
    "Bead",
    "TransliterationLine",
    "ViewTransliteration",
    "assign_by_order",
    "assign_gale_church",
    "assign_lines",
    "assignment_from_beads",
    "gale_church",
    "match_cost",
    "prepare_transliteration",
    "prior_widths",
    "view_transliteration",
]
