"""``ckpt_path=last``: which checkpoint a resumed training run continues."""

import os

import pytest
from omegaconf import OmegaConf

from cuneidet.errors import DataNotFoundError
from cuneidet.training import resolve_resume_checkpoint


def config(tmp_path, run: str, ckpt_path: str | None = "last"):
    return OmegaConf.create(
        {
            "ckpt_path": ckpt_path,
            "task_name": "task",
            "paths": {"log_dir": str(tmp_path), "output_dir": str(tmp_path / "task/runs" / run)},
        }
    )


def checkpoint(tmp_path, run: str, name: str = "last.ckpt", mtime: float = 0.0):
    path = tmp_path / "task/runs" / run / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    if mtime:
        os.utime(path, (mtime, mtime))
    return str(path)


def test_a_run_resumes_its_own_last_checkpoint(tmp_path):
    checkpoint(tmp_path, "older", mtime=2e9)
    own = checkpoint(tmp_path, "mine", mtime=1e9)
    assert resolve_resume_checkpoint(config(tmp_path, "mine")) == own


def test_a_run_stopped_in_its_first_epoch_starts_again_rather_than_continue_another(tmp_path):
    checkpoint(tmp_path, "other")
    checkpoint(tmp_path, "mine", name="best.ckpt")  # killed after best.ckpt, before last.ckpt
    assert resolve_resume_checkpoint(config(tmp_path, "mine")) is None


def test_a_new_run_folder_continues_the_newest_run_of_the_task(tmp_path):
    checkpoint(tmp_path, "a", mtime=1e9)
    newest = checkpoint(tmp_path, "b", mtime=2e9)
    assert resolve_resume_checkpoint(config(tmp_path, "new")) == newest


def test_nothing_to_resume_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"no last\.ckpt.*start without ckpt_path"):
        resolve_resume_checkpoint(config(tmp_path, "new"))
    assert resolve_resume_checkpoint(config(tmp_path, "new", ckpt_path=None)) is None
    with pytest.raises(DataNotFoundError, match=r"nowhere\.ckpt does not exist"):
        resolve_resume_checkpoint(config(tmp_path, "new", ckpt_path=str(tmp_path / "nowhere.ckpt")))
