"""The benchmark scripts' timer."""

import pytest

from cuneidet.utils.timing import median_seconds


def test_median_seconds_warms_up_once_then_times_each_call():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=3)
    assert len(calls) == 4 and seconds >= 0
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, repeats=0)


def test_report_figures_prints_aligned_lines_and_writes_json(tmp_path, capsys):
    import json

    from cuneidet.utils.timing import report_figures

    report_figures({"views": 3, "align_plus_place_s": 1.5}, str(tmp_path / "bench.json"))
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["views               3", "align_plus_place_s  1.5"]
    assert json.loads((tmp_path / "bench.json").read_text()) == {
        "views": 3,
        "align_plus_place_s": 1.5,
    }
