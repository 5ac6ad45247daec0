"""cuneidet.cli."""
