"""The sign classifier: crops of annotated signs (and background) → sign class."""
