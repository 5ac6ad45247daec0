"""Text lines: the line network, line hypotheses from its map, and their evaluation."""
