"""Test-wide settings: W&B disabled, no dependence on the developer's data folder."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
