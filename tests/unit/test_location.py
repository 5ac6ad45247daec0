"""Data directory resolution: explicit value > environment variable > ../shared/data defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from cuneidet.data import location
from cuneidet.data.location import ENV_VAR, is_data_dir, repo_root, resolve_data_dir
from cuneidet.errors import DataNotFoundError


def make_data_dir(path: Path) -> Path:
    (path / "csdd" / "segments").mkdir(parents=True)
    return path


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env var, cwd and repository root inside tmp_path (so /work/shared is never seen)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(location, "repo_root", lambda: tmp_path / "checkout" / "repo")
    return tmp_path


def test_explicit_value_wins_over_env(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = make_data_dir(isolated / "explicit")
    monkeypatch.setenv(ENV_VAR, str(make_data_dir(isolated / "from_env")))
    assert resolve_data_dir(explicit) == explicit.resolve()
    assert resolve_data_dir(str(explicit)) == explicit.resolve()


def test_env_used_when_not_configured(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = make_data_dir(isolated / "from_env")
    make_data_dir(isolated / "shared" / "data")  # the cwd default must lose against the env
    monkeypatch.setenv(ENV_VAR, str(from_env))
    assert resolve_data_dir() == from_env.resolve()
    assert resolve_data_dir("") == from_env.resolve()


def test_env_wins_over_defaults_relative_path(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_data_dir(isolated / "cwd" / "rel")
    monkeypatch.setenv(ENV_VAR, "rel")
    assert resolve_data_dir() == (isolated / "cwd" / "rel").resolve()


def test_default_relative_to_cwd(isolated: Path) -> None:
    default = make_data_dir(isolated / "shared" / "data")  # <cwd>/../shared/data
    assert resolve_data_dir() == default.resolve()


def test_default_relative_to_repo_root(isolated: Path) -> None:
    default = make_data_dir(isolated / "checkout" / "shared" / "data")
    assert resolve_data_dir() == default.resolve()


def test_cwd_default_before_repo_root_default(isolated: Path) -> None:
    cwd_default = make_data_dir(isolated / "shared" / "data")
    make_data_dir(isolated / "checkout" / "shared" / "data")
    assert resolve_data_dir() == cwd_default.resolve()


def test_missing_configured_dir_is_an_error_not_a_fallback(isolated: Path) -> None:
    make_data_dir(isolated / "shared" / "data")  # a valid default exists but must not be used
    missing = isolated / "nope"
    with pytest.raises(DataNotFoundError) as info:
        resolve_data_dir(missing)
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message
    assert "data.data_dir" in message


def test_invalid_env_dir_is_an_error(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_data_dir(isolated / "shared" / "data")
    monkeypatch.setenv(ENV_VAR, str(isolated / "nope"))
    with pytest.raises(DataNotFoundError, match=ENV_VAR):
        resolve_data_dir()


def test_dir_without_csdd_gets_precise_message(isolated: Path) -> None:
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match=r"exists but has no csdd/ subfolder"):
        resolve_data_dir(empty)


def test_pointing_at_csdd_itself_suggests_parent(isolated: Path) -> None:
    data = make_data_dir(isolated / "d")
    with pytest.raises(DataNotFoundError, match="point at its parent"):
        resolve_data_dir(data / "csdd")


def test_nothing_found_lists_places_and_instructions(isolated: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        resolve_data_dir()
    message = str(info.value)
    assert str((isolated / "shared" / "data").resolve()) in message
    assert str((isolated / "checkout" / "shared" / "data").resolve()) in message
    assert ENV_VAR in message and "data.data_dir" in message
    assert "compvis/cuneiform-sign-detection-dataset" in message
    assert "csdd/images" in message
    assert isinstance(info.value, FileNotFoundError)


def test_is_data_dir(tmp_path: Path) -> None:
    assert not is_data_dir(tmp_path)
    assert is_data_dir(make_data_dir(tmp_path / "x"))


def test_repo_root_holds_pyproject() -> None:
    root = repo_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert (root / "src" / "cuneidet").is_dir()
