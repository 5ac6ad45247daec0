"""cuneidet.data."""
