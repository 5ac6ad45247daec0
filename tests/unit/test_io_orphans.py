"""Atomic writes after a SIGKILL: the next write of the same file removes the dead writer's
temporary file (cuneidet.utils.io)."""

import os
import subprocess
import sys

import pytest

from cuneidet.utils.io import _HOST, atomic_path, write_json

DIES_MID_WRITE = """
import os, signal, sys
from cuneidet.utils.io import atomic_open, atomic_path
if sys.argv[2] == "path":
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
with atomic_open(sys.argv[1], "w") as handle:
    handle.write("half")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_mid_write(target, how):
    done = subprocess.run([sys.executable, "-c", DIES_MID_WRITE, str(target), how])
    assert done.returncode == -9


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process ids")
def test_a_killed_writers_temporary_file_goes_with_the_next_write(tmp_path):
    figure = tmp_path / "figure.png"
    _killed_mid_write(figure, "path")
    orphans = list(tmp_path.glob(".figure.*.png"))
    assert len(orphans) == 1 and not figure.exists()
    assert orphans[0].name.startswith(f".figure.{_HOST}-")

    report = tmp_path / "report.json"
    _killed_mid_write(report, "open")
    assert len(list(tmp_path.glob(".report.json.*.tmp"))) == 1

    # a live writer's file (this process) and another target's orphan stay
    live = tmp_path / f".figure.{_HOST}-{os.getpid()}-abcdefgh.png"
    live.write_bytes(b"being written")
    other = tmp_path / f".figure2.{_HOST}-999999999-abcdefgh.png"
    other.write_bytes(b"other target")

    with atomic_path(figure) as tmp:
        tmp.write_bytes(b"whole")
    write_json(report, {"ok": True})
    assert figure.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["figure.png", "report.json", live.name, other.name]
    )


def test_checkpoints_are_saved_beside_their_file_not_in_tmpdir(tmp_path, monkeypatch):
    import tempfile

    import torch

    from cuneidet.utils.checkpoint_io import AtomicCheckpointIO

    staging = tmp_path / "tmpdir"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    target = tmp_path / "run" / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, target)
    io.save_checkpoint({"epoch": 4, "state_dict": {"w": torch.zeros(2)}}, target)
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    assert not list(staging.iterdir()), "nothing staged in $TMPDIR"
    assert io.load_checkpoint(target)["epoch"] == 4
