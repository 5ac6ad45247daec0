"""Resumable stages: skipped when done, rerun on change, never half-written, resumable work."""

import json

import pytest

from cuneidet.pipeline.stages import StageRunner, fingerprint, read_manifest


class Boom(RuntimeError):
    pass


def _writer(calls, fail_after=None):
    """A stage writing three files; with ``fail_after`` it raises after that many files."""

    def work(out):
        calls.append(out)
        for i in range(3):
            if fail_after is not None and i == fail_after:
                raise Boom("killed mid-way")
            (out / f"part{i}.txt").write_text(f"{i}\n")
        return {"files": 3}

    return work


def test_a_finished_stage_is_skipped_and_a_changed_one_reruns(tmp_path):
    runner = StageRunner(tmp_path, extra={"command": "test"})
    calls = []
    first = runner.run(0, "lines", {"a": 1}, {}, _writer(calls))
    assert not first.skipped and first.metrics == {"files": 3}
    assert first.directory == tmp_path / "iter_0" / "lines"
    manifest = read_manifest(first.directory)
    assert manifest["status"] == "done" and manifest["command"] == "test"
    assert manifest["outputs"] == ["part0.txt", "part1.txt", "part2.txt"]
    again = runner.run(0, "lines", {"a": 1}, {}, _writer(calls))
    assert again.skipped and len(calls) == 1
    changed = runner.run(0, "lines", {"a": 2}, {}, _writer(calls))
    assert not changed.skipped and len(calls) == 2


def test_an_upstream_change_reruns_the_downstream_stage(tmp_path):
    runner = StageRunner(tmp_path)
    calls = []
    up = runner.run(0, "lines", {"a": 1}, {}, _writer([]))
    runner.run(0, "hypotheses", {}, {"lines": up}, _writer(calls))
    runner.run(0, "hypotheses", {}, {"lines": up}, _writer(calls))
    assert len(calls) == 1
    up2 = runner.run(0, "lines", {"a": 2}, {}, _writer([]))
    assert up2.fingerprint != up.fingerprint
    runner.run(0, "hypotheses", {}, {"lines": up2}, _writer(calls))
    assert len(calls) == 2


def test_a_stage_killed_mid_way_leaves_nothing_readable_and_reruns_the_same(tmp_path):
    runner = StageRunner(tmp_path)
    with pytest.raises(Boom):
        runner.run(1, "align", {"x": 1}, {}, _writer([], fail_after=2))
    final = tmp_path / "iter_1" / "align"
    assert not final.exists()  # readers never see a half-written stage
    partial = tmp_path / "iter_1" / ".align.partial"
    assert read_manifest(partial)["status"] == "failed"
    result = runner.run(1, "align", {"x": 1}, {}, _writer([]))
    assert not result.skipped and not partial.exists()
    assert sorted(p.name for p in final.iterdir()) == [
        "manifest.json",
        "part0.txt",
        "part1.txt",
        "part2.txt",
    ]


def test_a_failed_rerun_keeps_the_previous_finished_stage(tmp_path):
    runner = StageRunner(tmp_path)
    runner.run(0, "lines", {"a": 1}, {}, _writer([]))
    with pytest.raises(Boom):
        runner.run(0, "lines", {"a": 2}, {}, _writer([], fail_after=1))
    kept = read_manifest(tmp_path / "iter_0" / "lines")
    assert kept["status"] == "done" and kept["config"] == {"a": 1}


def test_a_resumable_stage_finds_its_unfinished_work(tmp_path):
    runner = StageRunner(tmp_path)
    seen = []

    def work(out):
        seen.append(sorted(p.name for p in out.iterdir()))
        (out / "step1.ckpt").write_text("1")
        if len(seen) == 1:
            raise Boom("killed during training")
        return {}

    with pytest.raises(Boom):
        runner.run(0, "train", {"epochs": 2}, {}, work, resumable=True)
    runner.run(0, "train", {"epochs": 2}, {}, work, resumable=True)
    assert seen == [["manifest.json"], ["manifest.json", "step1.ckpt"]]
    # another configuration does not resume the unfinished work of the first
    (tmp_path / "iter_0" / ".train.partial").mkdir()
    (tmp_path / "iter_0" / ".train.partial" / "stale.ckpt").write_text("0")
    runner.run(0, "train", {"epochs": 3}, {}, work, resumable=True)
    assert seen[-1] == ["manifest.json"]


def test_fingerprint_is_order_independent():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint(json.loads("{}"))) == 16


def test_lookup_finds_a_finished_stage_only_as_configured(tmp_path):
    runner = StageRunner(tmp_path)
    assert runner.lookup(0, "lines", {"a": 1}, {}) is None
    done = runner.run(0, "lines", {"a": 1}, {}, _writer([]))
    found = StageRunner(tmp_path).lookup(0, "lines", {"a": 1}, {})
    assert found is not None and found.fingerprint == done.fingerprint and found.skipped
    assert runner.lookup(0, "lines", {"a": 2}, {}) is None


def test_initial_weights_of_a_training_stage(tmp_path):
    from cuneidet.errors import ConfigError
    from cuneidet.pipeline.run import initial_weights

    previous = StageRunner(tmp_path).run(
        0, "train", {}, {}, lambda out: {"checkpoint": "checkpoints/best.ckpt"}
    )
    best = str(previous.directory / "checkpoints" / "best.ckpt")
    assert initial_weights("previous", None, None) == (None, None)
    assert initial_weights("previous", "forge.ckpt", None) == ("forge.ckpt", "forge.ckpt")
    assert initial_weights("previous", "forge.ckpt", previous) == (best, previous)
    assert initial_weights("scratch", None, previous) == (None, None)
    assert initial_weights("scratch", "forge.ckpt", previous) == ("forge.ckpt", "forge.ckpt")
    with pytest.raises(ConfigError, match=r"pipeline\.init"):
        initial_weights("last", None, None)


def test_a_replaced_version_left_by_a_kill_is_removed_when_the_stage_is_skipped(tmp_path):
    runner = StageRunner(tmp_path)
    runner.run(0, "lines", {"a": 1}, {}, _writer([]))
    stale = tmp_path / "iter_0" / ".lines.old"  # killed while the replaced version was removed
    stale.mkdir()
    (stale / "part0.txt").write_text("old\n")
    assert runner.run(0, "lines", {"a": 1}, {}, _writer([])).skipped
    assert not stale.exists()
