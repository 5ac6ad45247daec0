"""cuneidet: cuneiform sign detection."""

__version__ = "0.1.0"
