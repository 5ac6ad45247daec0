"""Provenance of written figures: the commit they came from."""

from cuneidet.utils import provenance as common


def test_git_commit_marks_a_dirty_working_tree(monkeypatch):
    answers = {"rev-parse": "abc123", "status": ""}
    monkeypatch.setattr(common, "_git", lambda *args: answers[args[0]])
    assert common.git_commit() == "abc123"
    answers["status"] = " M src/cuneidet/lines/truth.py"
    assert common.git_commit() == "abc123-dirty"
    answers["rev-parse"] = None
    assert common.git_commit() is None


def test_git_commit_of_this_checkout_names_a_commit():
    commit = common.git_commit()
    assert commit is None or len(commit.removesuffix("-dirty")) == 40
