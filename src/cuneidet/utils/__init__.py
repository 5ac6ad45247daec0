"""cuneidet.utils."""
